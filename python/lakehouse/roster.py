"""A synthetic staffing roster (SPEC section 5): ``lakehouse gen-roster --n 10000 --seed 1``.

Columns: worker_id (``w-00001``), name, role, city, state, certifications, skills, shift,
availability, years_experience, rating. Values come from fixed vocabularies: light-industrial
staffing roles (the reference's Forklift Operator, CNC Operator, Warehouse Associate, Picker,
Loader, Shipping Clerk, ...), Midwest cities, role-specific certifications and skills
(lists joined by ``;``). The output is a pure function of ``(n, seed)``, and row ``i`` does
not depend on ``n`` (the first 100 rows of a 10,000-row roster are the 100-row roster), so
tests, the demo and the benchmarks can call :func:`iter_roster` in-process and agree.

``--format jsonl`` writes one JSON object per line instead, with the same keys and values
(numbers as numbers; certifications and skills as the same ``;``-joined strings, so both
formats carry one roster): the roster file validatord reads (``[validatord].roster_path``,
contract section 13.1), which checks ``worker_id``, ``name``, ``role``, ``city``, ``state``
and ``availability`` (``On assignment`` = not active).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import orjson

__all__ = ["ACTIVE_AVAILABILITY", "COLUMNS", "FORMATS", "ROLES", "CITIES", "iter_roster", "write_roster", "main"]

#: output formats of write_roster / gen-roster
FORMATS = ("csv", "jsonl")

COLUMNS = (
    "worker_id",
    "name",
    "role",
    "city",
    "state",
    "certifications",
    "skills",
    "shift",
    "availability",
    "years_experience",
    "rating",
)

#: role -> (weight, certifications typical of it, skills typical of it)
ROLES: dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = {
    "Forklift Operator": (
        12,
        ("Forklift Certified", "OSHA-10", "OSHA-30", "Reach Truck", "Order Picker"),
        ("pallet jack", "reach truck", "RF scanner", "loading docks", "cold storage", "inventory counts"),
    ),
    "Warehouse Associate": (
        14,
        ("OSHA-10", "Forklift Certified", "First Aid/CPR"),
        ("RF scanner", "packing", "cycle counts", "shipping and receiving", "pallet wrapping", "cold storage"),
    ),
    "Picker": (
        10,
        ("OSHA-10", "Order Picker"),
        ("pick to light", "RF scanner", "order accuracy", "voice picking", "packing"),
    ),
    "Packer": (
        6,
        ("OSHA-10",),
        ("packing", "labeling", "quality checks", "pallet wrapping", "kitting"),
    ),
    "Loader": (
        7,
        ("OSHA-10", "Forklift Certified"),
        ("trailer loading", "heavy lifting", "pallet jack", "load securing", "loading docks"),
    ),
    "Shipping Clerk": (
        5,
        ("OSHA-10", "Hazmat"),
        ("bills of lading", "WMS software", "carrier scheduling", "label printing", "data entry"),
    ),
    "Receiving Clerk": (
        4,
        ("OSHA-10",),
        ("WMS software", "purchase order matching", "RF scanner", "data entry", "inventory counts"),
    ),
    "Material Handler": (
        6,
        ("Forklift Certified", "OSHA-10", "Lockout/Tagout"),
        ("line feeding", "pallet jack", "kanban", "inventory counts", "heavy lifting"),
    ),
    "CNC Operator": (
        7,
        ("OSHA-10", "MSSC CPT", "NIMS Machining Level I"),
        ("G-code", "CNC lathe", "CNC mill", "blueprint reading", "calipers and micrometers", "first article inspection"),
    ),
    "Machine Operator": (
        6,
        ("OSHA-10", "Lockout/Tagout", "MSSC CPT"),
        ("press operation", "injection molding", "machine setup", "quality checks", "SPC charts"),
    ),
    "Assembler": (
        6,
        ("OSHA-10", "IPC-A-610"),
        ("hand tools", "torque tools", "blueprint reading", "soldering", "kitting"),
    ),
    "Production Line Worker": (
        8,
        ("OSHA-10", "Lockout/Tagout"),
        ("line work", "quality checks", "packing", "machine tending", "5S"),
    ),
    "Quality Inspector": (
        3,
        ("ASQ CQI", "Six Sigma Yellow Belt", "ISO 9001 Awareness"),
        ("calipers and micrometers", "CMM", "SPC charts", "first article inspection", "blueprint reading"),
    ),
    "Inventory Specialist": (
        3,
        ("OSHA-10", "APICS CPIM"),
        ("cycle counts", "WMS software", "Excel", "inventory reconciliation", "RF scanner"),
    ),
    "Maintenance Technician": (
        3,
        ("OSHA-30", "Lockout/Tagout", "NFPA 70E", "EPA 608"),
        ("PLC troubleshooting", "hydraulics", "pneumatics", "preventive maintenance", "welding"),
    ),
    "Industrial Electrician": (
        2,
        ("OSHA-30", "NFPA 70E", "Journeyman Electrician License", "Lockout/Tagout"),
        ("PLC troubleshooting", "motor controls", "conduit bending", "three-phase power", "blueprint reading"),
    ),
    "Welder": (
        3,
        ("AWS Certified Welder", "OSHA-10", "Confined Space"),
        ("MIG welding", "TIG welding", "stick welding", "blueprint reading", "grinding"),
    ),
    "Heavy Equipment Operator": (
        2,
        ("OSHA-30", "NCCCO Crane", "CDL-A"),
        ("excavator", "loader", "bulldozer", "site grading", "rigging"),
    ),
    "Truck Driver": (
        3,
        ("CDL-A", "Hazmat", "TWIC"),
        ("route planning", "ELD logs", "pre-trip inspection", "load securing", "tanker"),
    ),
    "Sanitation Worker": (
        2,
        ("OSHA-10", "Confined Space", "HACCP"),
        ("chemical handling", "food-grade sanitation", "pressure washing", "Lockout/Tagout"),
    ),
}

#: (city, state), Midwest
CITIES: tuple[tuple[str, str], ...] = (
    ("Milwaukee", "WI"),
    ("Madison", "WI"),
    ("Green Bay", "WI"),
    ("Kenosha", "WI"),
    ("Chicago", "IL"),
    ("Rockford", "IL"),
    ("Joliet", "IL"),
    ("Aurora", "IL"),
    ("Peoria", "IL"),
    ("Indianapolis", "IN"),
    ("Fort Wayne", "IN"),
    ("Gary", "IN"),
    ("Detroit", "MI"),
    ("Grand Rapids", "MI"),
    ("Lansing", "MI"),
    ("Toledo", "OH"),
    ("Columbus", "OH"),
    ("Cleveland", "OH"),
    ("Cincinnati", "OH"),
    ("Dayton", "OH"),
    ("Minneapolis", "MN"),
    ("St. Paul", "MN"),
    ("Des Moines", "IA"),
    ("Cedar Rapids", "IA"),
    ("St. Louis", "MO"),
    ("Kansas City", "MO"),
    ("Omaha", "NE"),
)
#: bigger metros get more workers
_CITY_WEIGHTS = (9, 3, 2, 2, 12, 3, 3, 3, 2, 8, 3, 2, 8, 4, 2, 4, 5, 5, 4, 3, 5, 3, 3, 2, 4, 4, 3)

_GENERAL_CERTS = ("OSHA-10", "First Aid/CPR", "Forklift Certified", "Hazmat", "Six Sigma Yellow Belt")
_GENERAL_SKILLS = ("bilingual English/Spanish", "team lead", "Microsoft Office", "safety compliance", "training new hires")

_FIRST = (
    "James", "Maria", "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda", "William",
    "Elizabeth", "Jose", "Barbara", "Carlos", "Susan", "Daniel", "Jessica", "Luis", "Sarah",
    "Anthony", "Karen", "Kevin", "Nancy", "Jamal", "Lisa", "Brian", "Aisha", "DeShawn", "Emily",
    "Tyler", "Ashley", "Hector", "Megan", "Tou", "Mai", "Ahmed", "Fatima", "Grzegorz", "Anna",
    "Marcus", "Latoya", "Kyle", "Rosa", "Andre", "Nicole", "Juan", "Olga", "Samuel", "Yesenia",
)
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Robinson", "Walker", "Young", "Allen", "Kowalski", "Nowak", "Schmidt", "Mueller", "Vang",
    "Xiong", "Nguyen", "Patel", "Khan", "Olson", "Larson", "Peterson", "Jablonski", "Reyes",
)
_SHIFTS = ("Day", "Night", "Swing", "Weekend", "Rotating")
_SHIFT_WEIGHTS = (40, 25, 15, 10, 10)
_AVAILABILITY = ("Immediate", "1 week", "2 weeks", "Part-time", "On assignment")
_AVAILABILITY_WEIGHTS = (35, 20, 15, 15, 15)
#: the availabilities of workers who can take a shift (validatord refuses "On assignment" fills)
ACTIVE_AVAILABILITY = tuple(a for a in _AVAILABILITY if a != "On assignment")


def iter_roster(n: int, seed: int = 1) -> Iterator[tuple[str | int | float, ...]]:
    """Rows of the roster in COLUMNS order; a pure function of (n, seed), prefix-stable."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    roles = list(ROLES)
    # cumulative weights once, not per call (choices() would recompute them every row)
    role_cum = list(itertools.accumulate(ROLES[r][0] for r in roles))
    city_cum = list(itertools.accumulate(_CITY_WEIGHTS))
    shift_cum = list(itertools.accumulate(_SHIFT_WEIGHTS))
    avail_cum = list(itertools.accumulate(_AVAILABILITY_WEIGHTS))
    for i in range(1, n + 1):
        role = rng.choices(roles, cum_weights=role_cum)[0]
        _, role_certs, role_skills = ROLES[role]
        city, state = rng.choices(CITIES, cum_weights=city_cum)[0]
        certs = rng.sample(role_certs, rng.randint(0, min(3, len(role_certs))))
        if rng.random() < 0.2:
            extra = rng.choice(_GENERAL_CERTS)
            if extra not in certs:
                certs.append(extra)
        skills = rng.sample(role_skills, rng.randint(1, min(4, len(role_skills))))
        if rng.random() < 0.3:
            skills.append(rng.choice(_GENERAL_SKILLS))
        years = min(35, int(rng.expovariate(1 / 6)))
        # ratings lean on experience a little, like real coordinator scores
        rating = round(min(5.0, max(1.0, rng.gauss(3.6 + years * 0.02, 0.6))), 1)
        yield (
            f"w-{i:05d}",  # fixed width: row i is the same whatever n is
            f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            role,
            city,
            state,
            ";".join(certs),
            ";".join(skills),
            rng.choices(_SHIFTS, cum_weights=shift_cum)[0],
            rng.choices(_AVAILABILITY, cum_weights=avail_cum)[0],
            years,
            rating,
        )


def write_roster(
    out: TextIO,
    n: int,
    seed: int = 1,
    progress: Callable[[int, int], None] | None = None,
    *,
    format: str = "csv",  # noqa: A002
) -> int:
    """Write the roster to ``out`` as CSV (header first) or JSONL (an object per line);
    returns the row count.

    ``progress(done, n)`` is called about every 5% of the rows.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        write_row = writer.writerow
    else:

        def write_row(row: tuple[str | int | float, ...]) -> None:
            out.write(orjson.dumps(dict(zip(COLUMNS, row, strict=True))).decode() + "\n")

    step = max(1, n // 20)
    for i, row in enumerate(iter_roster(n, seed), 1):
        write_row(row)
        if progress is not None and (i % step == 0 or i == n):
            progress(i, n)
    return n


def main(argv: list[str]) -> int:
    """``lakehouse gen-roster``: write a synthetic roster as CSV or JSONL to stdout (or --output)."""
    parser = argparse.ArgumentParser(
        prog="lakehouse gen-roster",
        description="write a synthetic staffing roster as CSV (or JSONL, validatord's roster file)",
        epilog=(
            "examples:\n"
            "  lakehouse gen-roster --n 10000 --seed 1 > workers.csv\n"
            "  lakehouse gen-roster --format jsonl -o lakehouse-data/workers.jsonl\n"
            "      then [validatord] roster_path = \"workers.jsonl\" (relative to data_dir)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=10_000, help="rows (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="csv or jsonl (default: jsonl when --output ends in .jsonl, else csv)",
    )
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("--n must be >= 0")
    fmt = args.format or ("jsonl" if (args.output or "").lower().endswith(".jsonl") else "csv")

    def report(done: int, total: int) -> None:
        print(f"gen-roster: {done:,}/{total:,} rows", file=sys.stderr, flush=True)

    # progress only where it helps: large rosters, unless --quiet
    progress = report if args.n >= 100_000 and not args.quiet else None
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as fh:
            write_roster(fh, args.n, args.seed, progress, format=fmt)
    else:
        try:
            write_roster(sys.stdout, args.n, args.seed, progress, format=fmt)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head` closed the pipe: not an error
            sys.stderr.close()
            return 0
    return 0
