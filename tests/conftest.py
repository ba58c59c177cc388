import sys
from pathlib import Path

# The test bed helpers live in tests/testbed and are imported as `testbed`.
sys.path.insert(0, str(Path(__file__).parent))
# The plugins import gpuprov's code as the collection gpuprov.gpu, which the clone
# is (collections/ links back to it); Ansible's collection loader also scans sys.path.
sys.path.insert(0, str(Path(__file__).parents[1] / "collections"))
