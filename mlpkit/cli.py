"""The ``mlpkit`` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from mlpkit.commands import (
    download_command, generate_command, info_command, md_command, properties_command, stability_command, study_command,
    train_command,
)
from mlpkit.errors import MlpkitError
from mlpkit.fileio import discard_partial_writes, remove_unused_folder
from mlpkit.models import ARCHITECTURES, ModelConfig
from mlpkit.runtime import run_with_huge_pages, with_huge_pages

# what an interrupted verb has kept, and how to go on
RESUME_HINTS = {
    "train": "the last finished epoch is kept in {out}/model.resume.npz",
    "md": "the last finished chunk is kept in {out}/state.npz",
    "study": "every finished run is kept in {out}/runs",
    "stability": "every finished cell is kept in {out}/stability",
}


def seed(text: str) -> int:
    """A random seed: an integer ≥ 0 (NumPy's generators take no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is an integer ≥ 0, got {value}")
    return value


SIGNALLED = (130, 143)  # the exit codes after SIGINT and SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that open atomic writes are cleaned up on the way out."""


REDELIVERY_S = 1.0  # how often a signal is sent again until the verb has caught it


class _Interruption:
    """The SIGINT and SIGTERM handlers while a verb runs in the main thread (installed here, put back by
    :meth:`restore`; also where a shell started the process in the background with SIGINT ignored, so `kill -INT`
    stops it cleanly). The first signal raises :class:`KeyboardInterrupt` or :class:`Terminated`. Python drops an
    exception raised where nothing can catch it (in a ``__del__``, or in the garbage-collection callback JAX
    registers) with an "Exception ignored" traceback, and a run once went on after its SIGTERM that way: so until
    :meth:`caught` the signal is sent again every second, and the dropped one is kept off the terminal."""

    def __init__(self):
        self.signum: int | None = None
        self._caught = threading.Event()
        self._previous_hook = sys.unraisablehook
        self._previous_handlers = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers live only there
            self._previous_handlers = {signum: signal.signal(signum, self._handle) for signum in (signal.SIGINT, signal.SIGTERM)}
            sys.unraisablehook = self._unraisable

    def caught(self) -> None:
        self._caught.set()

    def restore(self) -> None:
        self.caught()
        sys.unraisablehook = self._previous_hook
        for signum, handler in self._previous_handlers.items():
            if handler is not None:  # None: a handler installed outside Python, which cannot be put back
                signal.signal(signum, handler)

    def _handle(self, signum, frame):
        if self._caught.is_set():
            return  # on the way out already
        if self.signum is None:
            self.signum = signum
            threading.Thread(target=self._redeliver, daemon=True).start()
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def _unraisable(self, unraisable) -> None:
        if not (unraisable.exc_type is not None and issubclass(unraisable.exc_type, (KeyboardInterrupt, Terminated))):
            self._previous_hook(unraisable)

    def _redeliver(self) -> None:
        while not self._caught.wait(REDELIVERY_S):
            os.kill(os.getpid(), self.signum)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpkit", description="mlpkit: machine-learning interatomic potentials, Si → Ge transfer learning.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="generate, download and inspect data sets")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)

    generate = data_verbs.add_parser("generate", help="generate the Stillinger–Weber reference data sets")
    generate.add_argument("--element", nargs="+", default=["Si", "Ge"], choices=["Si", "Ge"])
    generate.add_argument("--out", default="sw-data", help="output folder (default: sw-data; the shipped sets are mlpkit/data/sw)")
    generate.add_argument("--seed", type=seed, default=0)
    generate.add_argument("--quick", action="store_true", help="a few frames per group, for tests")
    generate.add_argument("--no-progress", action="store_true")
    generate.set_defaults(run=generate_command)

    download = data_verbs.add_parser("download", help="download the mlearn DFT data (needs a network), SHA-256 checked")
    download.add_argument("--out", required=True, help="folder that receives {Si,Ge}/{training,test}.json")
    download.add_argument("--element", nargs="+", default=["Si", "Ge"], choices=["Si", "Ge"])
    download.set_defaults(run=download_command)

    info = data_verbs.add_parser("info", help="summarise data files (.xyz/.extxyz, .npz, mlearn .json)")
    info.add_argument("paths", nargs="+")
    info.set_defaults(run=info_command)

    fit = verbs.add_parser("train", help="train a model (or an ensemble) and write a checkpoint")
    fit.add_argument("--data", required=True, help="training data: a file (.extxyz, .npz, mlearn .json) or sw:Si / sw:Ge")
    fit.add_argument("--model", default=ModelConfig().architecture, choices=sorted(ARCHITECTURES))
    fit.add_argument("--out", required=True, help="output folder: model.npz, history.csv, metrics.json")
    fit.add_argument("--validation", help="validation data (default: a stratified split of --data)")
    fit.add_argument("--val-fraction", type=float, default=0.1, help="validation share when --validation is absent")
    fit.add_argument("--test", help="data to report final errors on (never used for choices)")
    fit.add_argument("--max-frames", type=int, help="train on this many randomly chosen frames only")
    fit.add_argument("--ensemble", type=int, default=1, help="number of members trained together (seeds seed … seed+K−1)")
    fit.add_argument("--seed", type=seed, default=0)
    fit.add_argument("--data-seed", type=seed, default=0, help="seed of the split and the batch order")
    fit.add_argument("--epochs", type=int, help="maximum number of epochs")
    fit.add_argument("--batch-size", type=int, help="frames per step (default 8)")
    fit.add_argument("--learning-rate", type=float, help="peak Adam learning rate (default 2e-3)")
    fit.add_argument("--features", type=int, help="feature width (default 64; 32 with --quick)")
    fit.add_argument("--layers", type=int, help="message-passing layers (default 3; 2 with --quick)")
    fit.add_argument("--radial-basis", type=int, help="radial basis functions (default 8)")
    fit.add_argument("--product", choices=["dense", "symmetric"],
                     help="MACE's products: dense (default) or MACE's symmetric contraction with per-element weights "
                          "(a third of the FLOPs; benchmarks/RESULTS.md)")
    fit.add_argument("--float64", action="store_true")
    fit.add_argument("--recipe", choices=["default", "mace"],
                     help="mace: mace-torch's training recipe (AMSGrad, rate 1e-2 reduced on plateaus, batch 4, forces "
                          "weighted 100, a late energy stage), lower errors per CPU-minute on the DFT data; default: Adam "
                          "with a decaying rate. Unset: mace for the MACE model, default for the others. The flags below "
                          "override its parts")
    fit.add_argument("--virial-weight", type=float,
                     help="weight of the virial (stress) term of the loss in every stage (default 0.1 against forces 1; "
                          "1 against forces 100 with --recipe mace): raise it when elastic constants matter")
    fit.add_argument("--late-energy-weight", type=float,
                     help="energy weight of a late training stage (the loss weighs energies 1 and forces 1 before it)")
    fit.add_argument("--late-fraction", type=float, help="share of the epochs the late stage takes (default 0.2; 0.25 with --recipe mace)")
    fit.add_argument("--late-learning-rate", type=float, help="constant learning rate of the late stage (default: the schedule's)")
    fit.add_argument("--optimiser", choices=["adam", "amsgrad"], help="the optimiser's direction (default adam)")
    fit.add_argument("--weight-decay", type=float, help="L2 weight decay added to the gradients (default 0)")
    fit.add_argument("--schedule", choices=["decay", "plateau"],
                     help="decay: exponential from the peak rate down to 2e-5 at the last epoch (default); plateau: the peak "
                          "rate held and multiplied by 0.8 whenever the validation force MAE stalls for over 10 epochs")
    fit.add_argument("--quick", action="store_true", help="small model, 40 epochs: about two minutes on a laptop")
    fit.add_argument("--overwrite", action="store_true",
                     help="replace a finished run in --out made from other data or settings (refused otherwise)")
    fit.add_argument("--allow-outliers", action="store_true", help="train even on frames mlpkit.data.outlier_report finds suspicious")
    fit.add_argument("--no-progress", action="store_true")
    fit.set_defaults(run=train_command)

    study = verbs.add_parser("study", help="learning curves: Ge from scratch vs transferred from Si, over sizes and seeds")
    study.add_argument("--data", choices=["sw", "mlearn"], default="sw")
    study.add_argument("--mlearn-dir", help="folder with {Si,Ge}/{training,test}.json (for --data mlearn)")
    study.add_argument("--sizes", type=int, nargs="+", help="Ge training frames per run, 0 = all (default 5 10 25 50 100 0)")
    study.add_argument("--seeds", type=int,
                       help="seeds per cell (default 3; 1 with --quick): members of one ensemble on one draw of the Ge data, or with "
                            "--preset paper / gpu independent draws (each its own Ge subset, validation split and model)")
    study.add_argument("--inits", nargs="+", default=["scratch", "transfer"],
                       help="scratch, transfer, transfer-plain; scratch-/transfer- with the suffix -active (the Ge frames the Si "
                            "ensemble disagrees on most) or -diverse (farthest-point sampling in the transferred model's "
                            "features) instead of random frames (default: scratch transfer)")
    study.add_argument("--rescale-lengths", action=argparse.BooleanOptionalAction, default=True,
                       help="'transfer' models see Ge geometry scaled by a_Si / a_Ge of the data's reference (default: on, "
                            "the best protocol measured; 'transfer-plain', the paper's, never is)")
    study.add_argument("--source", help="the Si checkpoint to transfer from (a path, or pretrained:NAME); its architecture "
                                        "and size are used. Default: the shipped source of the data (sw: "
                                        "pretrained:si_mace_sw, mlearn: pretrained:si_mace_mlearn) when it is the model the "
                                        "study trains, else a Si model trained first")
    study.add_argument("--train-source", action="store_true", help="train the Si source within the study instead")
    study.add_argument("--max-train-temperature", type=float, metavar="K",
                       help="temperature transferability: train and validate the Ge models only on frames at or below K "
                            "(frames without a temperature are kept); the test errors are reported by temperature band")
    study.add_argument("--epochs", type=int, help="maximum epochs per training (default 300; 20 with --quick)")
    study.add_argument("--features", type=int, help="feature width (default 64; 32 with --quick)")
    study.add_argument("--layers", type=int, help="message-passing layers (default 3; 2 with --quick)")
    study.add_argument("--distributed", action="store_true",
                       help="one of several processes (jax.distributed) sharing the cells and the --out folder")
    study.add_argument("--coordinator", help="with --distributed: HOST:PORT of process 0 (default: from the cluster environment)")
    study.add_argument("--num-processes", type=int, help="with --distributed: number of processes")
    study.add_argument("--process-id", type=int, help="with --distributed: this process's index, 0 … P−1")
    study.add_argument("--wait-timeout", type=float, default=600.0,
                       help="seconds a process waits for a run another process has not started or stopped updating "
                            "(default 600)")
    study.add_argument("--model", choices=sorted(ARCHITECTURES), help=f"architecture (default {ModelConfig().architecture})")
    study.add_argument("--out", required=True, help="output folder: results.csv, results.json, report.html, runs/")
    study.add_argument("--preset", choices=["quick", "paper", "gpu"],
                       help="quick: a demonstration in minutes; paper: the paper's sizes 5 … all with 3 independent draws, "
                            "sized for 2 CPU cores (≤ 150 min as two processes, see README); gpu: the same at full model "
                            "size (default: the default model and sizes, the seeds as ensemble members)")
    study.add_argument("--quick", action="store_true", help="the same as --preset quick")
    study.add_argument("--no-progress", action="store_true")
    study.set_defaults(run=study_command)
    stability = verbs.add_parser("stability", help="stability map of a finished study: MD survival by temperature and Ge set size")
    stability.add_argument("--study", required=True, help="output folder of `mlpkit study` (results.csv and runs/)")
    stability.add_argument("--temperatures", type=float, nargs="+",
                           help="NVT temperatures in K (default 300 605 1089 1816.5: up to 1.5 × Ge's melting point)")
    stability.add_argument("--duration-fs", type=float, help="MD length per replica (default 10000; 250 with --quick)")
    stability.add_argument("--replicas", type=int, help="MD seeds per cell and temperature (default 4; 2 with --quick)")
    stability.add_argument("--sizes", type=int, nargs="+", help="only these Ge set sizes of the study, 0 = the largest (default: all)")
    stability.add_argument("--inits", nargs="+", help="only these initialisations of the study (default: all)")
    stability.add_argument("--quick", action="store_true",
                           help="605 and 1816.5 K, 2 replicas, 0.25 ps, the smallest and largest Ge set: minutes on a CPU")
    stability.add_argument("--out", help="folder for stability.csv and the finished cells (default: the study's folder); "
                                        "the study's report.html gains the map either way")
    stability.add_argument("--no-progress", action="store_true")
    stability.set_defaults(run=stability_command)
    properties = verbs.add_parser("properties", help="lattice constant, bulk modulus, elastic constants, vacancy, phonons of a potential")
    chosen = properties.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--potential", help="sw:Si, sw:Ge or a checkpoint (model.npz)")
    chosen.add_argument("--study", help="a finished SW study's folder: the table of its seed-0 models at --sizes beside SW Ge, "
                                        "written into the folder (properties_table.json, .md) and its report")
    properties.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 0], help="with --study: Ge set sizes (0: all)")
    properties.add_argument("--out", help="output folder: properties.json (with --potential)")
    properties.add_argument("--element", help="element to measure (default: the potential's only element)")
    properties.add_argument("--quick", action="store_true", help="smaller vacancy cell, fewer EOS points: seconds with SW")
    properties.set_defaults(run=properties_command)
    md = verbs.add_parser("md", help="molecular dynamics with SW or a trained model; thermo log, trajectory, resumable",
                          description="Molecular dynamics under the stability monitor. Exit status 0: the run finished; 3: it "
                                      "became unphysical and was stopped (its trajectory up to then and summary.json are kept); "
                                      "2: an error.")
    md.add_argument("--potential", required=True, help="sw:Si, sw:Ge or a checkpoint (model.npz)")
    md.add_argument("--temperature", type=float, default=300.0, help="thermostat (NVT) or starting (NVE) temperature, K")
    md.add_argument("--steps", type=int, required=True, help="number of MD steps (rounded up to whole chunks)")
    md.add_argument("--ensemble", choices=["nvt", "nve"], default="nvt")
    md.add_argument("--thermostat", choices=["langevin", "nose-hoover"], default="langevin")
    md.add_argument("--dt", type=float, default=1.0, help="time step, fs (default 1)")
    md.add_argument("--structure", help="starting structure (any ASE-readable file); default: diamond supercell")
    md.add_argument("--element", choices=["Si", "Ge"], help="element of the default diamond supercell (default: the potential's)")
    md.add_argument("--supercell", type=int, default=2, help="repeats of the 8-atom cubic cell (default 2: 64 atoms)")
    md.add_argument("--seed", type=seed, default=0)
    md.add_argument("--chunk", type=int, default=20, help="steps per compiled chunk, and per thermo row (default 20)")
    md.add_argument("--forces", action="store_true", help="also store forces in the trajectory")
    md.add_argument("--max-spread", type=float, default=2.0, help="ensemble force spread (eV/Å) that counts as failure")
    md.add_argument("--no-monitor", action="store_true", help="stop only on non-finite energies or runaway atoms")
    md.add_argument("--float32", action="store_true", help="single precision (default: double)")
    md.add_argument("--out", required=True, help="output folder: thermo.csv, trajectory.extxyz, summary.json, state.npz")
    md.add_argument("--no-progress", action="store_true")
    md.set_defaults(run=md_command)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    code = _run(args)
    if code and getattr(args, "distributed", False):
        # jax.distributed's shutdown would wait for the peers this process gave up on, then abort: leave now
        leave(code)
    return code


def leave(code: int) -> None:
    """End the process with ``code`` without the interpreter's shutdown: every result is written (atomically)
    by then, and XLA's threads, stopped mid-work by a signal, can crash that shutdown (a segfault or an abort)."""
    discard_partial_writes()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _resume_hint(args) -> str:
    """What an interrupted verb has kept, if it has kept anything yet."""
    out = getattr(args, "out", None) or getattr(args, "study", "")
    if args.verb == "train" and not os.path.exists(os.path.join(out, "model.resume.npz")):
        return ""  # no epoch had finished: nothing is kept, and a rerun starts over
    return RESUME_HINTS.get(args.verb, "").format(out=out)


def _run(args) -> int:
    interruption = _Interruption()
    out = getattr(args, "out", None)
    made_out, finished = out is not None and not os.path.exists(out), False
    try:
        code = args.run(args) or 0  # a verb returns its own status where it finished with a result to flag
        finished = True
    except MlpkitError as error:
        print(f"mlpkit: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system refused: name the file and the reason, not a traceback
        where = error.filename if error.filename is not None else "mlpkit"
        print(f"mlpkit: error: {where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as signalled:
        interruption.caught()
        kept = _resume_hint(args)
        print(f"mlpkit: interrupted{'; ' + kept if kept else ''}; run the same command again to "
              f"{'resume' if kept else 'start over'}", file=sys.stderr)
        return 143 if isinstance(signalled, Terminated) else 130
    finally:
        interruption.restore()
        if made_out and not finished:
            remove_unused_folder(out)  # a refused or interrupted command leaves no empty --out folder behind
    return code


def entry() -> int:
    """The ``mlpkit`` command: on Linux first re-executed once with huge pages for XLA's buffers
    (:mod:`mlpkit.runtime`), then :func:`main`."""
    if sys.platform == "linux" and with_huge_pages(os.environ) != dict(os.environ):
        run_with_huge_pages([sys.executable, "-m", "mlpkit", *sys.argv[1:]])
    code = main()
    if code in SIGNALLED:
        leave(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
