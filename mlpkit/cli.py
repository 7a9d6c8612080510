"""The ``mlpkit`` command line."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from mlpkit.errors import MlpkitError


def _data_generate(args) -> None:
    from mlpkit.data.generate import SWDataSpec, write_sw_dataset

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpkit", description="mlpkit: machine-learning interatomic potentials, Si → Ge transfer learning.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="generate, download and inspect data sets")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)

    generate = data_verbs.add_parser("generate", help="generate the Stillinger–Weber reference data sets")
    generate.add_argument("--element", nargs="+", default=["Si", "Ge"], choices=["Si", "Ge"])
    generate.add_argument("--out", default="data/sw", help="output folder (default: data/sw)")
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
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        args.run(args)
    except MlpkitError as error:
        print(f"mlpkit: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
