import subprocess
import sys
from pathlib import Path


def test_import_aligniql_stays_light():
    # the inference package must not pull in training-only or optional packages (torch itself imports tqdm)
    code = ("import sys, aligniql; "
            "bad = [m for m in ('minari', 'training', 'gymnasium_robotics', 'imageio', 'h5py', 'd3rlpy', 'ray') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import aligniql imported {out.stdout.strip()}"


def test_training_imports_ray_only_when_a_sweep_runs():
    # ray is the optional [sweep] extra: train.py and sweep.py's definitions (and --help) work without it
    code = "import sys, training.train, training.sweep; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"
