import os
from pathlib import Path

# Generated designs and simulator builds go under build/ of the checkout, whatever the cwd.
os.environ.setdefault("PEFORGE_BUILD_DIR", str(Path(__file__).resolve().parent.parent / "build"))
