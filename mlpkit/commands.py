"""What each verb of the ``mlpkit`` command does, given its parsed arguments (:mod:`mlpkit.cli` parses them)."""

from __future__ import annotations

import shlex
import sys
import time

from mlpkit.errors import MlpkitError
from mlpkit.models import ModelConfig

MAX_SUPERCELL = 40  # 512,000 atoms: beyond it neighbour lists alone outgrow a workstation's memory
UNSTABLE_EXIT = 3  # mlpkit md's status when the run became unphysical and was stopped (its files are kept)


def generate_command(args) -> None:
    from mlpkit.reference import SWDataSpec, write_sw_dataset

    command = "mlpkit " + shlex.join(args.argv)
    for element in args.element:
        spec = SWDataSpec(element, seed=args.seed)
        spec = spec.quick() if args.quick else spec
        start = time.perf_counter()
        paths = write_sw_dataset(spec, args.out, command, progress=not args.no_progress)
        print(f"{element}: wrote {', '.join(map(str, paths.values()))} in {time.perf_counter() - start:.0f} s")


def download_command(args) -> None:
    from mlpkit.data.mlearn import download_mlearn

    print(f"mlearn data verified in {download_mlearn(args.out, args.element)}")


def info_command(args) -> None:
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


def train_config(args):
    """The :class:`~mlpkit.training.TrainConfig` that ``mlpkit train``'s flags ask for."""
    import dataclasses

    from mlpkit.training import TrainConfig

    config = TrainConfig(model=ModelConfig(args.model), seeds=tuple(range(args.seed, args.seed + args.ensemble)),
                         data_seed=args.data_seed, float64=args.float64)
    config = config.quick() if args.quick else config
    recipe = args.recipe or ("mace" if args.model == "mace" else "default")  # measured: benchmarks/RESULTS.md, accuracy §10, §12
    config = config.mace_recipe() if recipe == "mace" else config
    model_settings = {"features": args.features, "layers": args.layers, "radial_basis": args.radial_basis, "product": args.product}
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **{k: v for k, v in model_settings.items() if v is not None}),
        **{k: v for k, v in {"max_epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                             "optimiser": args.optimiser, "weight_decay": args.weight_decay,
                             "schedule": args.schedule}.items() if v is not None},
    )
    if args.late_energy_weight is not None:
        config = dataclasses.replace(config, late_weights=dataclasses.replace(config.weights, energy=args.late_energy_weight))
    if args.virial_weight is not None:
        config = dataclasses.replace(config, **{name: dataclasses.replace(weights, virial=args.virial_weight) for name, weights
                                                in (("weights", config.weights), ("late_weights", config.late_weights))
                                                if weights is not None})
    late_stage = {k: v for k, v in {"late_fraction": args.late_fraction, "late_learning_rate": args.late_learning_rate}.items()
                  if v is not None}
    if late_stage and config.late_weights is None:
        raise MlpkitError("--late-fraction and --late-learning-rate shape a late stage: give that stage with "
                          "--late-energy-weight (or take MACE's with --recipe mace)")
    config = dataclasses.replace(config, **late_stage)  # the flags replace only the parts they name
    return config


def train_command(args) -> None:
    from mlpkit.data import outlier_report, shuffled, train_val_split
    from mlpkit.data.outliers import describe
    from mlpkit.errors import DataError
    from mlpkit.fileio import locked_folder, writable_folder
    from mlpkit.models.graph import ElementTable

    out = writable_folder(args.out)
    if args.max_frames is not None and args.max_frames < 1:
        raise MlpkitError(f"--max-frames must be at least 1, got {args.max_frames}")
    config = train_config(args)
    dataset = _resolve_data(args.data)
    if args.validation:
        train_set, validation_set = dataset, _resolve_data(args.validation)
    else:
        train_set, validation_set = train_val_split(dataset, args.val_fraction, seed=args.data_seed)
    if args.max_frames is not None:
        if args.max_frames > len(train_set):
            raise MlpkitError(f"--max-frames {args.max_frames}: the training set holds only {len(train_set)} frames")
        train_set = shuffled(train_set, args.data_seed).first(args.max_frames)
    test_set = _resolve_data(args.test) if args.test else None  # read, and its elements checked, before any training
    if test_set is not None:
        ElementTable.from_species(train_set.species).check(test_set.species, f"the --test set {args.test}")
    outliers = outlier_report(dataset, config.model.cutoff_a)
    if outliers and not args.allow_outliers:
        raise DataError(f"{describe(outliers)}; fix or remove them, or pass --allow-outliers", path=args.data)
    with locked_folder(out):
        inputs = _run_inputs(config, train_set, validation_set)
        _refuse_other_finished_run(out, inputs, args.overwrite)
        _fit(args, out, train_set, validation_set, config, inputs, test_set)


def _run_inputs(config, train_set, validation_set) -> dict:
    """What makes a training run this run: its settings and the SHA-256 of its frames (JSON-able)."""
    import json

    from mlpkit.data.dataset import ATOM_FIELDS, FRAME_FIELDS
    from mlpkit.training.resume import fingerprint

    def digest(frames):
        return fingerprint(*(getattr(frames, name) for name in FRAME_FIELDS + ATOM_FIELDS))

    settings = json.loads(json.dumps(config.key_fields(), default=str))
    return {"config": settings, "training_frames_sha256": digest(train_set), "validation_frames_sha256": digest(validation_set)}


def _refuse_other_finished_run(out, inputs: dict, overwrite: bool) -> None:
    """A folder holding a finished run (``metrics.json``) from other inputs is not written over without ``--overwrite``."""
    import json

    path = out / "metrics.json"
    if overwrite or not path.exists():
        return
    try:
        recorded = json.loads(path.read_text()).get("inputs")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise MlpkitError(f"{out} holds a finished run whose inputs metrics.json does not record (an older mlpkit, or "
                          "an edited file); choose another --out, or pass --overwrite to replace it")
    changed = [key for key in ("training_frames_sha256", "validation_frames_sha256") if recorded.get(key) != inputs[key]]
    settings = recorded.get("config") or {}
    changed += [f"config.{key}" for key in sorted(set(settings) | set(inputs["config"])) if settings.get(key) != inputs["config"].get(key)]
    if changed:
        raise MlpkitError(f"{out} holds a finished run made from other inputs (differing: {', '.join(changed)}); choose "
                          "another --out, or pass --overwrite to replace model.npz, history.csv and metrics.json")


def _fit(args, out, train_set, validation_set, config, inputs: dict, test_set) -> None:
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
               "best_epoch": result.best_epoch.tolist(), "inputs": inputs}
    if test_set is not None:
        summary["test"] = evaluate(result.checkpoint, test_set)
    finite = {split: ({k: (v if v == v else None) for k, v in m.items()} if isinstance(m, dict) else m)
              for split, m in summary.items()}  # JSON has no NaN: metrics without data become null
    write_text_atomic(out / "metrics.json", json.dumps(finite, indent=2) + "\n")
    for split in ("validation", "test"):
        if split in summary:
            m = summary[split]
            print(f"{split}: energy MAE {m['energy_mae_mev_per_atom']:.2f} meV/atom, "
                  f"force MAE {m['force_mae_ev_per_a']:.4f} eV/Å, stress MAE {m['stress_mae_gpa']:.3f} GPa")
    print(f"wrote {out / 'model.npz'} after {result.wall_s:.0f} s")


def study_command(args) -> None:
    import dataclasses

    if args.distributed:  # before anything touches a JAX backend, mlpkit's own imports included
        import jax

        # coordinator, process count and index from the flags, else from the cluster environment (SLURM, ...)
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    from mlpkit.checkpoint import load_checkpoint
    from mlpkit.fileio import writable_folder
    from mlpkit.study import StudyConfig, run_study
    from mlpkit.training import TrainConfig

    writable_folder(args.out)  # before any work
    preset = "quick" if args.quick else args.preset
    if args.quick and args.preset not in (None, "quick"):
        raise MlpkitError(f"--quick is --preset quick: it cannot be combined with --preset {args.preset}")
    config = StudyConfig(data=args.data, mlearn_dir=args.mlearn_dir, inits=tuple(args.inits),
                         train=TrainConfig(model=ModelConfig(args.model or ModelConfig().architecture)),
                         rescale_lengths=args.rescale_lengths, max_train_temperature_k=args.max_train_temperature)
    config = {"quick": StudyConfig.quick, "paper": StudyConfig.paper, "gpu": StudyConfig.gpu}.get(preset, lambda c: c)(config)
    sizes = {"features": args.features, "layers": args.layers}
    model = dataclasses.replace(config.train.model, **{k: v for k, v in sizes.items() if v is not None})
    if args.seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(range(args.seeds)))
    source = study_source(args, config, model)
    if source is not None:  # the Ge models take the source's architecture and size
        model = load_checkpoint(source).config
    config = dataclasses.replace(config, source=source, train=dataclasses.replace(config.train, model=model))
    if args.sizes:
        config = dataclasses.replace(config, sizes=tuple(args.sizes))
    if args.epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_epochs=args.epochs))
    rows = run_study(config, args.out, progress=not args.no_progress, wait_timeout_s=args.wait_timeout)
    print(f"{len(rows)} runs; wrote {args.out}/results.csv, results.json and report.html")


def study_source(args, config, model) -> str | None:
    """The Si checkpoint a study transfers from: ``--source``; else, unless ``--train-source``, the shipped source of
    the data when it is the model asked for and has a member for each of ``config``'s (ensemble) seeds and no
    active selection needs an ensemble; None: the study trains its own. An explicit ``--model``,
    ``--features`` or ``--layers`` that the given source does not have is an error, not ignored."""
    from mlpkit.checkpoint import load_checkpoint
    from mlpkit.study.config import SHIPPED_SOURCES

    if args.train_source:
        if args.source:
            raise MlpkitError("--source and --train-source exclude each other: transfer from a given model or train one")
        return None
    if args.source is None:  # the shipped source, one member: it seeds single models, not ensembles or active ranking
        shipped = load_checkpoint(SHIPPED_SOURCES[args.data])
        members = 1 if config.independent_draws else len(config.seeds)
        usable = shipped.config == model and shipped.ensemble_size >= members and not any(i.endswith("-active") for i in config.inits)
        return SHIPPED_SOURCES[args.data] if usable else None
    given = load_checkpoint(args.source).config
    asked = {"architecture": args.model, "features": args.features, "layers": args.layers}
    clashes = [f"--{name.replace('architecture', 'model')} {value} (the source has {getattr(given, name)})"
               for name, value in asked.items() if value is not None and value != getattr(given, name)]
    if clashes:
        raise MlpkitError(f"{args.source}: the Ge models take the source's architecture and size, and the source does not "
                          f"match {', '.join(clashes)}; leave these flags out, or use --train-source")
    return args.source


def stability_command(args) -> None:
    from mlpkit.fileio import writable_folder
    from mlpkit.md.stability_grid import MapSettings, stability_map, study_cells
    from mlpkit.study.run import refresh_report

    preset = MapSettings.quick() if args.quick else MapSettings()
    sizes = args.sizes
    if args.quick and not sizes:  # the smallest and the largest Ge set: where the map differs most
        known = sorted({size for size, _ in study_cells(args.study)}, key=lambda n: n or float('inf'))
        sizes = (known[0], known[-1])
    settings = MapSettings(
        temperatures_k=tuple(args.temperatures) if args.temperatures else preset.temperatures_k,
        duration_fs=preset.duration_fs if args.duration_fs is None else args.duration_fs,
        replicas=preset.replicas if args.replicas is None else args.replicas,
    )
    out = args.out or args.study
    writable_folder(out)
    rows = stability_map(args.study, sizes=sizes, inits=args.inits, settings=settings, out=out,
                         progress=not args.no_progress)
    report = refresh_report(args.study, rows)
    print(f"{len(rows)} rows; wrote {out}/stability.csv and the map into {report}")


def properties_command(args) -> None:
    import json

    from mlpkit.analysis import PropertyConfig, compute_properties
    from mlpkit.checkpoint import checkpoint_path
    from mlpkit.fileio import regular_file, writable_folder, write_text_atomic
    from mlpkit.potentials.sw import parse_sw_spec

    if args.study:
        return _study_properties(args)
    if not args.out:
        raise MlpkitError("--potential needs --out, the folder for properties.json")
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


def _study_properties(args) -> None:
    from mlpkit.study.properties import study_property_table
    from mlpkit.study.run import refresh_report

    table = study_property_table(args.study, tuple(args.sizes), quick=args.quick)
    print(table.to_markdown())
    refresh_report(args.study)
    print(f"wrote {args.study}/properties_table.json, properties_table.md and the table into report.html")


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


def md_command(args) -> int:
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
        return _simulate(args, potential, atoms, config, limits, RunFolder(out, atoms, settings, config.dt_fs, with_forces=args.forces))


def _simulate(args, potential, atoms, config, limits, run) -> int:
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
        print(f"mlpkit: warning: the run became unphysical and was stopped: {error}; the trajectory up to the last good "
              "chunk is kept, and summary.json records the failure (a smaller --dt or a sounder potential runs further)",
              file=sys.stderr)
    wall_s = time.perf_counter() - start
    summary.update(steps=steps, time_fs=steps * config.dt_fs, atoms=len(atoms), wall_s=wall_s,
                   atom_steps_per_s=len(atoms) * (steps - done) / wall_s if steps > done else None)
    write_text_atomic(run.folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"{steps} steps ({steps * config.dt_fs / 1000:.2f} ps) in {wall_s:.0f} s; "
          f"wrote {run.thermo_path}, {run.trajectory_path} and summary.json")
    return 0 if summary["stable"] else UNSTABLE_EXIT
