import subprocess
import sys


def test_import_aligniql_stays_light():
    # the inference package must not pull in training-only or optional packages (torch itself imports tqdm)
    code = ("import sys, aligniql; "
            "bad = [m for m in ('minari', 'training', 'gymnasium_robotics', 'imageio', 'h5py', 'd3rlpy') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import aligniql imported {out.stdout.strip()}"
