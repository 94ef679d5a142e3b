"""Training: the settings of a run (``config``), one training step (``step``), the loop with
checkpoints, resume, Ctrl-C and NaN handling (``loop``), the run directory's checkpoint and metric
files (``checkpoint``, ``metrics``), and the command line (``cli``: ``python -m xcnn.train``)."""
from .config import RunConfig
from .loop import RunResult, fit

__all__ = ["RunConfig", "RunResult", "fit"]
