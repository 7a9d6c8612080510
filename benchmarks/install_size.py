"""Installed size of mlpkit's runtime dependencies and of each extra, read from this environment's metadata.

    python benchmarks/install_size.py [--requirements "jax>=0.10" "flax" ...]

Walks the dependency closure of mlpkit's ``Requires-Dist`` (or of the requirements given) through the
installed distributions, adding up the files each one's RECORD lists. Extras of dependencies are
followed only where a requirement names them; environment markers are evaluated here.
"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_mib(dist: metadata.Distribution) -> float:
    total = 0
    for file in dist.files or ():
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def wanted(requirement: Requirement, extras) -> bool:
    """Whether ``requirement`` applies here, for a parent installed with ``extras``."""
    return requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in (*extras, ""))


def closure(requirements: list[str]) -> dict[str, float]:
    """{distribution: MiB} of everything ``requirements`` pull in, each distribution counted once."""
    sizes, todo = {}, [r for r in map(Requirement, requirements) if wanted(r, ())]
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if name in sizes:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            sizes[name] = float("nan")
            continue
        sizes[name] = installed_mib(dist)
        todo += [child for child in map(Requirement, dist.requires or ()) if wanted(child, requirement.extras)]
    return sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requirements", nargs="+", help="measure these instead of mlpkit's own")
    args = parser.parse_args(argv)
    if args.requirements:
        groups = {"given": args.requirements}
    else:
        mlpkit = metadata.distribution("mlpkit")
        groups = {"runtime": [r for r in mlpkit.requires if "extra ==" not in r]}
        for extra in mlpkit.metadata.get_all("Provides-Extra") or ():
            groups[f"runtime + {extra}"] = groups["runtime"] + [
                r.split(";")[0] for r in mlpkit.requires if f'extra == "{extra}"' in r]
    for name, requirements in groups.items():
        sizes = closure(requirements)
        print(f"{name}: {len(sizes)} distributions, {sum(s for s in sizes.values() if s == s):.0f} MiB")


if __name__ == "__main__":
    main()
