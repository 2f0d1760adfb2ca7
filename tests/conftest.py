import sys
from pathlib import Path

# Let tests import their helpers package and the project without installation.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
