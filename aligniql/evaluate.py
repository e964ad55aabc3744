"""``python -m aligniql.evaluate ...``: the evaluation command line, kept under its documented name.

The command lives in :mod:`aligniql.eval_cli` (also installed as ``aligniql-eval``). ``aligniql.evaluate`` is
the evaluation *function*; importing a submodule of that name would rebind the package attribute to the
module, so this file only runs as ``__main__`` and refuses to be imported.
"""

if __name__ != "__main__":
    raise ImportError("aligniql.evaluate is the evaluation function (from aligniql import evaluate); the command "
                      "line is aligniql.eval_cli (run it as aligniql-eval or python -m aligniql.evaluate)")

from aligniql.eval_cli import main

raise SystemExit(main())
