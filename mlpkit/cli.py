"""The ``mlpkit`` command line."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time

from mlpkit.errors import MlpkitError
from mlpkit.models import ARCHITECTURES, ModelConfig
from mlpkit.runtime import run_with_huge_pages, with_huge_pages

MAX_SUPERCELL = 40  # 512,000 atoms: beyond it neighbour lists alone outgrow a workstation's memory
# what an interrupted verb has kept, and how to go on
RESUME_HINTS = {
    "train": "the last finished epoch is kept in {out}/model.resume.npz",
    "md": "the last finished chunk is kept in {out}/state.npz",
    "study": "every finished run is kept in {out}/runs",
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that open atomic writes are cleaned up on the way out."""


def _terminate(signum, frame):
    raise Terminated()


def _data_generate(args) -> None:
    from mlpkit.reference import SWDataSpec, write_sw_dataset

    command = "mlpkit " + shlex.join(args.argv)
    for element in args.element:
        spec = SWDataSpec(element, seed=args.seed)
        spec = spec.quick() if args.quick else spec
        start = time.perf_counter()
        paths = write_sw_dataset(spec, args.out, command, progress=not args.no_progress)
        print(f"{element}: wrote {', '.join(map(str, paths.values()))} in {time.perf_counter() - start:.0f} s")


def _data_download(args) -> None:
    from mlpkit.data.mlearn import download_mlearn

    print(f"mlearn data verified in {download_mlearn(args.out, args.element)}")


def _data_info(args) -> None:
    import collections

    import numpy as np

    from mlpkit.data import load_dataset

    for path in args.paths:
        dataset = load_dataset(path)
        print(f"{path}: {len(dataset)} frames, {int(dataset.n_atoms.sum())} atoms, elements {dataset.elements}")
        per_atom = dataset.energy_ev / dataset.n_atoms
        print(f"  energy per atom {per_atom.min():.4f} … {per_atom.max():.4f} eV, "
              f"largest |F| {np.linalg.norm(dataset.forces_ev_per_a, axis=1).max():.3f} eV/Å, stress on {int(dataset.has_stress.sum())} frames")
        groups = collections.Counter(map(str, dataset.group))
        print("  groups: " + ", ".join(f"{g or '(none)'} {n}" for g, n in sorted(groups.items())))


def _resolve_data(spec: str):
    """A data path, or ``sw:Si`` / ``sw:Ge`` (optionally ``sw:Si:test``) for the shipped SW sets."""
    from mlpkit.data import load_dataset, sw_data_path
    from mlpkit.fileio import regular_file
    from mlpkit.potentials.sw import parse_sw_spec

    sw = parse_sw_spec(spec)
    if sw is not None:
        element, split = sw
        return load_dataset(sw_data_path(element, split or "training"))
    return load_dataset(regular_file(spec, "data"))


def _train(args) -> None:
    import dataclasses

    from mlpkit.data import outlier_report, shuffled, train_val_split
    from mlpkit.data.outliers import describe
    from mlpkit.errors import DataError
    from mlpkit.fileio import locked_folder, writable_folder
    from mlpkit.training import TrainConfig

    out = writable_folder(args.out)
    if args.max_frames is not None and args.max_frames < 1:
        raise MlpkitError(f"--max-frames must be at least 1, got {args.max_frames}")
    dataset = _resolve_data(args.data)
    if args.validation:
        train_set, validation_set = dataset, _resolve_data(args.validation)
    else:
        train_set, validation_set = train_val_split(dataset, args.val_fraction, seed=args.data_seed)
    if args.max_frames is not None:
        train_set = shuffled(train_set, args.data_seed).first(args.max_frames)
    config = TrainConfig(model=ModelConfig(args.model), seeds=tuple(range(args.seed, args.seed + args.ensemble)),
                         data_seed=args.data_seed, float64=args.float64)
    config = config.quick() if args.quick else config
    model_sizes = {"features": args.features, "layers": args.layers, "radial_basis": args.radial_basis}
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **{k: v for k, v in model_sizes.items() if v is not None}),
        **{k: v for k, v in {"max_epochs": args.epochs, "batch_size": args.batch_size,
                             "learning_rate": args.learning_rate}.items() if v is not None},
    )
    if args.late_energy_weight is not None:
        late = dataclasses.replace(config.weights, energy=args.late_energy_weight)
        config = dataclasses.replace(config, late_weights=late, late_fraction=args.late_fraction)
    outliers = outlier_report(dataset, config.model.cutoff_a)
    if outliers and not args.allow_outliers:
        raise DataError(f"{describe(outliers)}; fix or remove them, or pass --allow-outliers", path=args.data)
    with locked_folder(out):
        _fit(args, out, train_set, validation_set, config)


def _fit(args, out, train_set, validation_set, config) -> None:
    import json

    from mlpkit.fileio import write_text_atomic
    from mlpkit.training import evaluate, train, write_history
    from mlpkit.training.resume import resume_path

    history = []

    def record(epoch, metrics):
        history.append(metrics)
        write_history(out / "history.csv", history)

    print(f"training {config.model.architecture} ×{len(config.seeds)} on {len(train_set)} frames, "
          f"validating on {len(validation_set)}; writing {out}/")
    if resume_path(out / "model.npz").exists():
        print(f"resuming from {resume_path(out / 'model.npz')} if it holds this run")
    result = train(train_set, validation_set, config, callback=record, checkpoint_path=out / "model.npz",
                   progress=not args.no_progress)
    summary = {"validation": evaluate(result.checkpoint, validation_set), "wall_s": result.wall_s,
               "best_epoch": result.best_epoch.tolist()}
    if args.test:
        summary["test"] = evaluate(result.checkpoint, _resolve_data(args.test))
    finite = {split: ({k: (v if v == v else None) for k, v in m.items()} if isinstance(m, dict) else m)
              for split, m in summary.items()}  # JSON has no NaN: metrics without data become null
    write_text_atomic(out / "metrics.json", json.dumps(finite, indent=2) + "\n")
    for split in ("validation", "test"):
        if split in summary:
            m = summary[split]
            print(f"{split}: energy MAE {m['energy_mae_mev_per_atom']:.2f} meV/atom, "
                  f"force MAE {m['force_mae_ev_per_a']:.4f} eV/Å, stress MAE {m['stress_mae_gpa']:.3f} GPa")
    print(f"wrote {out / 'model.npz'} after {result.wall_s:.0f} s")


def _study(args) -> None:
    import dataclasses

    if args.distributed:  # before anything touches a JAX backend, mlpkit's own imports included
        import jax

        # coordinator, process count and index from the flags, else from the cluster environment (SLURM, ...)
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    from mlpkit.checkpoint import load_checkpoint
    from mlpkit.fileio import writable_folder
    from mlpkit.study import StudyConfig, run_study
    from mlpkit.training import TrainConfig

    config = StudyConfig(
        data=args.data, mlearn_dir=args.mlearn_dir, seeds=tuple(range(args.seeds)), inits=tuple(args.inits),
        train=TrainConfig(model=ModelConfig(args.model)), rescale_lengths=args.rescale_lengths, source=args.source,
    )
    config = config.quick() if args.quick else config
    sizes = {"features": args.features, "layers": args.layers}
    model = dataclasses.replace(config.train.model, **{k: v for k, v in sizes.items() if v is not None})
    if args.source:  # the Ge models take the source's architecture and size
        model = load_checkpoint(args.source).config
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, model=model))
    if args.sizes:
        config = dataclasses.replace(config, sizes=tuple(args.sizes))
    if args.epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_epochs=args.epochs))
    writable_folder(args.out)
    rows = run_study(config, args.out, progress=not args.no_progress, wait_timeout_s=args.wait_timeout)
    print(f"{len(rows)} runs; wrote {args.out}/results.csv, results.json and report.html")


def _properties(args) -> None:
    import json

    from mlpkit.analysis import PropertyConfig, compute_properties
    from mlpkit.checkpoint import checkpoint_path
    from mlpkit.fileio import regular_file, writable_folder, write_text_atomic
    from mlpkit.potentials.sw import parse_sw_spec

    config = PropertyConfig().quick() if args.quick else PropertyConfig()
    out = writable_folder(args.out)
    if parse_sw_spec(args.potential) is None:
        regular_file(checkpoint_path(args.potential), "--potential")
    start = time.perf_counter()
    properties = compute_properties(args.potential, args.element, config)
    properties["wall_s"] = time.perf_counter() - start
    path = out / "properties.json"
    write_text_atomic(path, json.dumps(properties, indent=2) + "\n")
    print(f"{properties['element']}: a0 {properties['a0_angstrom']:.4f} Å, B {properties['bulk_modulus_gpa']:.1f} GPa, "
          f"C11/C12/C44 {properties['c11_gpa']:.1f}/{properties['c12_gpa']:.1f}/{properties['c44_gpa']:.1f} GPa, "
          f"vacancy {properties['vacancy_formation_ev'] or float('nan'):.3f} eV, Γ optical {properties['phonon_gamma_thz']:.2f} THz; "
          f"wrote {path} in {properties['wall_s']:.0f} s")
    for key, reason in properties["failures"].items():
        print(f"  {key}: not measured: {reason}")


def _md_structure(args, potential):
    """The starting structure: ``--structure FILE`` (any ASE-readable file), else a diamond supercell."""
    import ase.io

    from mlpkit.fileio import regular_file
    from mlpkit.structures import diamond

    if args.structure:
        try:
            return ase.io.read(regular_file(args.structure, "--structure"))
        except Exception as error:  # ASE raises many types for unreadable files
            raise MlpkitError(f"{args.structure}: cannot read a structure ({error})") from error
    element = args.element or (potential.elements or ("Si",))[0]
    if not 1 <= args.supercell <= MAX_SUPERCELL:
        raise MlpkitError(f"--supercell must be 1 … {MAX_SUPERCELL} ({8 * MAX_SUPERCELL ** 3:,} atoms), got {args.supercell}")
    return diamond(element, (args.supercell,) * 3)


def _md(args) -> None:
    from mlpkit import load_potential
    from mlpkit.checkpoint import checkpoint_path
    from mlpkit.fileio import locked_folder, regular_file, sha256_of, writable_folder
    from mlpkit.md import MDConfig, StabilityLimits
    from mlpkit.md.output import RunFolder
    from mlpkit.md.run import NO_LIMITS, checked_start_temperature
    from mlpkit.potentials.sw import parse_sw_spec

    out = writable_folder(args.out)
    if not 1 <= args.chunk <= args.steps:
        raise MlpkitError(f"--steps must be at least 1 and --chunk 1 … --steps, got --steps {args.steps} --chunk {args.chunk}")
    nvt = args.ensemble == "nvt"
    config = MDConfig(dt_fs=args.dt, temperature_k=args.temperature if nvt else None, thermostat=args.thermostat,
                      chunk_steps=args.chunk, float64=not args.float32)
    checked_start_temperature(args.temperature)
    limits = NO_LIMITS if args.no_monitor else StabilityLimits(max_spread_ev_per_a=args.max_spread)
    sw = parse_sw_spec(args.potential) is not None
    potential_file = None if sw else regular_file(checkpoint_path(args.potential), "--potential")
    potential = load_potential(args.potential if sw else potential_file)
    atoms = _md_structure(args, potential)
    settings = {key: value for key, value in vars(args).items() if key not in ("run", "argv", "out", "no_progress", "steps")}
    # a resume continues only against the same files, not merely the same paths
    settings["potential_sha256"] = None if sw else sha256_of(potential_file)
    settings["structure_sha256"] = sha256_of(args.structure) if args.structure else None
    with locked_folder(out):
        _simulate(args, potential, atoms, config, limits, RunFolder(out, atoms, settings, config.dt_fs, with_forces=args.forces))


def _simulate(args, potential, atoms, config, limits, run) -> None:
    import json
    import math

    from mlpkit.fileio import write_text_atomic
    from mlpkit.md import MDInstability, run_md

    resume = run.resume_point()
    if resume is None:
        run.start()
    done = resume.step if resume else 0
    n_chunks = max(math.ceil(args.steps / config.chunk_steps) - done // config.chunk_steps, 0)
    print(f"MD of {len(atoms)} atoms with {potential.name}, {args.ensemble.upper()} at {args.temperature} K, "
          f"{n_chunks * config.chunk_steps} steps of {config.dt_fs} fs" + (f", resuming at step {done}" if done else "")
          + f"; writing {run.folder}/")
    start = time.perf_counter()
    summary = {"stable": True, "failure_step": None, "failure_time_fs": None, "reason": ""}
    steps = done
    try:
        for frame in run_md(potential, atoms, n_chunks, config, seed=args.seed, initial_temperature_k=args.temperature,
                            progress=not args.no_progress, limits=limits, resume=resume):
            run.append(frame)
            steps = frame.step
    except MDInstability as error:
        failure = error.failure
        summary = {"stable": False, "failure_step": failure.step, "failure_time_fs": failure.time_fs, "reason": failure.reason}
        print(f"stopped: {error}")
    wall_s = time.perf_counter() - start
    summary.update(steps=steps, time_fs=steps * config.dt_fs, atoms=len(atoms), wall_s=wall_s,
                   atom_steps_per_s=len(atoms) * (steps - done) / wall_s if steps > done else None)
    write_text_atomic(run.folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"{steps} steps ({steps * config.dt_fs / 1000:.2f} ps) in {wall_s:.0f} s; "
          f"wrote {run.thermo_path}, {run.trajectory_path} and summary.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpkit", description="mlpkit: machine-learning interatomic potentials, Si → Ge transfer learning.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="generate, download and inspect data sets")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)

    generate = data_verbs.add_parser("generate", help="generate the Stillinger–Weber reference data sets")
    generate.add_argument("--element", nargs="+", default=["Si", "Ge"], choices=["Si", "Ge"])
    generate.add_argument("--out", default="sw-data", help="output folder (default: sw-data; the shipped sets are mlpkit/data/sw)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--quick", action="store_true", help="a few frames per group, for tests")
    generate.add_argument("--no-progress", action="store_true")
    generate.set_defaults(run=_data_generate)

    download = data_verbs.add_parser("download", help="download the mlearn DFT data (needs a network), SHA-256 checked")
    download.add_argument("--out", required=True, help="folder that receives {Si,Ge}/{training,test}.json")
    download.add_argument("--element", nargs="+", default=["Si", "Ge"], choices=["Si", "Ge"])
    download.set_defaults(run=_data_download)

    info = data_verbs.add_parser("info", help="summarise data files (.xyz/.extxyz, .npz, mlearn .json)")
    info.add_argument("paths", nargs="+")
    info.set_defaults(run=_data_info)

    fit = verbs.add_parser("train", help="train a model (or an ensemble) and write a checkpoint")
    fit.add_argument("--data", required=True, help="training data: a file (.extxyz, .npz, mlearn .json) or sw:Si / sw:Ge")
    fit.add_argument("--model", default=ModelConfig().architecture, choices=sorted(ARCHITECTURES))
    fit.add_argument("--out", required=True, help="output folder: model.npz, history.csv, metrics.json")
    fit.add_argument("--validation", help="validation data (default: a stratified split of --data)")
    fit.add_argument("--val-fraction", type=float, default=0.1, help="validation share when --validation is absent")
    fit.add_argument("--test", help="data to report final errors on (never used for choices)")
    fit.add_argument("--max-frames", type=int, help="train on this many randomly chosen frames only")
    fit.add_argument("--ensemble", type=int, default=1, help="number of members trained together (seeds seed … seed+K−1)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--data-seed", type=int, default=0, help="seed of the split and the batch order")
    fit.add_argument("--epochs", type=int, help="maximum number of epochs")
    fit.add_argument("--batch-size", type=int, help="frames per step (default 8)")
    fit.add_argument("--learning-rate", type=float, help="peak Adam learning rate (default 2e-3)")
    fit.add_argument("--features", type=int, help="feature width (default 64; 32 with --quick)")
    fit.add_argument("--layers", type=int, help="message-passing layers (default 3; 2 with --quick)")
    fit.add_argument("--radial-basis", type=int, help="radial basis functions (default 8)")
    fit.add_argument("--float64", action="store_true")
    fit.add_argument("--late-energy-weight", type=float,
                     help="energy weight of a late training stage (the loss weighs energies 1 and forces 1 before it)")
    fit.add_argument("--late-fraction", type=float, default=0.2, help="share of the epochs the late stage takes (default 0.2)")
    fit.add_argument("--quick", action="store_true", help="small model, 40 epochs: about two minutes on a laptop")
    fit.add_argument("--allow-outliers", action="store_true", help="train even on frames mlpkit.data.outlier_report finds suspicious")
    fit.add_argument("--no-progress", action="store_true")
    fit.set_defaults(run=_train)

    study = verbs.add_parser("study", help="learning curves: Ge from scratch vs transferred from Si, over sizes and seeds")
    study.add_argument("--data", choices=["sw", "mlearn"], default="sw")
    study.add_argument("--mlearn-dir", help="folder with {Si,Ge}/{training,test}.json (for --data mlearn)")
    study.add_argument("--sizes", type=int, nargs="+", help="Ge training frames per run, 0 = all (default 5 10 25 50 100 0)")
    study.add_argument("--seeds", type=int, default=3, help="seeds per cell, trained together as one ensemble (default 3)")
    study.add_argument("--inits", nargs="+", default=["scratch", "transfer"],
                       help="scratch, transfer, transfer-plain; with the suffix -active (scratch-active, transfer-active) "
                            "on the Ge frames the Si ensemble disagrees on most instead of random ones (default: scratch transfer)")
    study.add_argument("--rescale-lengths", action=argparse.BooleanOptionalAction, default=True,
                       help="'transfer' models see Ge geometry scaled by a_Si / a_Ge of the data's reference (default: on, "
                            "the best protocol measured; 'transfer-plain', the paper's, never is)")
    study.add_argument("--source", help="a trained Si checkpoint to transfer from instead of training one (a path, or "
                                        "pretrained:NAME, e.g. pretrained:si_mace_sw); its architecture and size are used")
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
    study.add_argument("--model", default=ModelConfig().architecture, choices=sorted(ARCHITECTURES))
    study.add_argument("--out", required=True, help="output folder: results.csv, results.json, report.html, runs/")
    study.add_argument("--quick", action="store_true", help="small models, 20 epochs, sizes up to 100 (timings: benchmarks/RESULTS.md)")
    study.add_argument("--no-progress", action="store_true")
    study.set_defaults(run=_study)
    properties = verbs.add_parser("properties", help="lattice constant, bulk modulus, elastic constants, vacancy, phonons of a potential")
    properties.add_argument("--potential", required=True, help="sw:Si, sw:Ge or a checkpoint (model.npz)")
    properties.add_argument("--out", required=True, help="output folder: properties.json")
    properties.add_argument("--element", help="element to measure (default: the potential's only element)")
    properties.add_argument("--quick", action="store_true", help="smaller vacancy cell, fewer EOS points: seconds with SW")
    properties.set_defaults(run=_properties)
    md = verbs.add_parser("md", help="molecular dynamics with SW or a trained model; thermo log, trajectory, resumable")
    md.add_argument("--potential", required=True, help="sw:Si, sw:Ge or a checkpoint (model.npz)")
    md.add_argument("--temperature", type=float, default=300.0, help="thermostat (NVT) or starting (NVE) temperature, K")
    md.add_argument("--steps", type=int, required=True, help="number of MD steps (rounded up to whole chunks)")
    md.add_argument("--ensemble", choices=["nvt", "nve"], default="nvt")
    md.add_argument("--thermostat", choices=["langevin", "nose-hoover"], default="langevin")
    md.add_argument("--dt", type=float, default=1.0, help="time step, fs (default 1)")
    md.add_argument("--structure", help="starting structure (any ASE-readable file); default: diamond supercell")
    md.add_argument("--element", choices=["Si", "Ge"], help="element of the default diamond supercell (default: the potential's)")
    md.add_argument("--supercell", type=int, default=2, help="repeats of the 8-atom cubic cell (default 2: 64 atoms)")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--chunk", type=int, default=20, help="steps per compiled chunk, and per thermo row (default 20)")
    md.add_argument("--forces", action="store_true", help="also store forces in the trajectory")
    md.add_argument("--max-spread", type=float, default=2.0, help="ensemble force spread (eV/Å) that counts as failure")
    md.add_argument("--no-monitor", action="store_true", help="stop only on non-finite energies or runaway atoms")
    md.add_argument("--float32", action="store_true", help="single precision (default: double)")
    md.add_argument("--out", required=True, help="output folder: thermo.csv, trajectory.extxyz, summary.json, state.npz")
    md.add_argument("--no-progress", action="store_true")
    md.set_defaults(run=_md)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    code = _run(args)
    if code and getattr(args, "distributed", False):
        # jax.distributed's shutdown would wait for the peers this process gave up on, then abort: leave now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(args) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live only there
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    if in_main_thread and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background by a shell, which ignores SIGINT for us: `kill -INT` still stops cleanly
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args.run(args)
    except MlpkitError as error:
        print(f"mlpkit: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system refused: name the file and the reason, not a traceback
        where = error.filename if error.filename is not None else "mlpkit"
        print(f"mlpkit: error: {where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as signalled:
        kept = RESUME_HINTS.get(args.verb, "").format(out=getattr(args, "out", ""))
        print(f"mlpkit: interrupted{'; ' + kept if kept else ''}; run the same command again to "
              f"{'resume' if kept else 'start over'}", file=sys.stderr)
        return 143 if isinstance(signalled, Terminated) else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def entry() -> int:
    """The ``mlpkit`` command: on Linux first re-executed once with huge pages for XLA's buffers
    (:mod:`mlpkit.runtime`), then :func:`main`."""
    if sys.platform == "linux" and with_huge_pages(os.environ) != dict(os.environ):
        run_with_huge_pages([sys.executable, "-m", "mlpkit", *sys.argv[1:]])
    return main()


if __name__ == "__main__":
    sys.exit(main())
