"pytest glue so that nbval can test nbdev-cleaned notebooks (see nbdev-toolchain notes, section 3)."
import os

# The last cell of every notebook calls `nbdev.nbdev_export()`; nbdev makes it a no-op when IN_TEST is set.
os.environ.setdefault("IN_TEST", "1")
# Plots must reach nbval as display_data (inline backend): MPLBACKEND=Agg would drop them.
os.environ.pop("MPLBACKEND", None)
# Small thread count keeps notebook numbers reproducible and CI on 2 cores predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(session, config, items):
    "nbdev_clean nulls `execution_count`; nbval would call such cells 'unrun' and refuse their stored outputs."
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and cell.get("cell_type") == "code" and cell.get("outputs") and cell.get("execution_count") is None:
            cell["execution_count"] = 1
