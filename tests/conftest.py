import sys
from pathlib import Path

# The test bed helpers live in tests/testbed and are imported as `testbed`.
sys.path.insert(0, str(Path(__file__).parent))
