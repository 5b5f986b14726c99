"""US ZIP code → region descriptions from a small built-in table (3-digit prefix ranges → state, plus major metros).

The table is our own, written from the USPS 3-digit prefix allocation: every allocated prefix maps to its state
(or territory), and the prefixes of the largest metro areas map to "City, State area". It is deliberately small
and approximate: it gives a language model a human-readable place for a demographic prompt, nothing more.
"""

from __future__ import annotations

import re
from bisect import bisect_right

# (first prefix, last prefix, state) — inclusive ranges of 3-digit ZIP prefixes.
_STATE_RANGES: list[tuple[int, int, str]] = [
    (5, 5, "New York"),
    (6, 7, "Puerto Rico"),
    (8, 8, "the U.S. Virgin Islands"),
    (9, 9, "Puerto Rico"),
    (10, 27, "Massachusetts"),
    (28, 29, "Rhode Island"),
    (30, 38, "New Hampshire"),
    (39, 49, "Maine"),
    (50, 54, "Vermont"),
    (55, 55, "Massachusetts"),
    (56, 59, "Vermont"),
    (60, 69, "Connecticut"),
    (70, 89, "New Jersey"),
    (100, 149, "New York"),
    (150, 196, "Pennsylvania"),
    (197, 199, "Delaware"),
    (200, 200, "Washington, D.C."),
    (201, 201, "Virginia"),
    (202, 205, "Washington, D.C."),
    (206, 219, "Maryland"),
    (220, 246, "Virginia"),
    (247, 268, "West Virginia"),
    (270, 289, "North Carolina"),
    (290, 299, "South Carolina"),
    (300, 319, "Georgia"),
    (320, 339, "Florida"),
    (341, 349, "Florida"),
    (350, 369, "Alabama"),
    (370, 385, "Tennessee"),
    (386, 397, "Mississippi"),
    (398, 399, "Georgia"),
    (400, 427, "Kentucky"),
    (430, 459, "Ohio"),
    (460, 479, "Indiana"),
    (480, 499, "Michigan"),
    (500, 528, "Iowa"),
    (530, 549, "Wisconsin"),
    (550, 567, "Minnesota"),
    (569, 569, "Washington, D.C."),
    (570, 577, "South Dakota"),
    (580, 588, "North Dakota"),
    (590, 599, "Montana"),
    (600, 629, "Illinois"),
    (630, 658, "Missouri"),
    (660, 679, "Kansas"),
    (680, 693, "Nebraska"),
    (700, 714, "Louisiana"),
    (716, 729, "Arkansas"),
    (730, 732, "Oklahoma"),
    (733, 733, "Texas"),
    (734, 749, "Oklahoma"),
    (750, 799, "Texas"),
    (800, 816, "Colorado"),
    (820, 831, "Wyoming"),
    (832, 838, "Idaho"),
    (840, 847, "Utah"),
    (850, 865, "Arizona"),
    (870, 884, "New Mexico"),
    (885, 885, "Texas"),
    (889, 898, "Nevada"),
    (900, 961, "California"),
    (967, 968, "Hawaii"),
    (969, 969, "Guam"),
    (970, 979, "Oregon"),
    (980, 994, "Washington"),
    (995, 999, "Alaska"),
]

# (first prefix, last prefix, metro) — major metro areas; the state comes from _STATE_RANGES.
_METRO_RANGES: list[tuple[int, int, str]] = [
    (17, 24, "Boston"),
    (28, 29, "Providence"),
    (60, 61, "Hartford"),
    (64, 65, "New Haven"),
    (70, 71, "Newark"),
    (73, 73, "Jersey City"),
    (100, 104, "New York City"),
    (105, 108, "New York City"),
    (110, 114, "New York City"),
    (115, 119, "Long Island"),
    (122, 122, "Albany"),
    (132, 132, "Syracuse"),
    (140, 142, "Buffalo"),
    (144, 146, "Rochester"),
    (150, 152, "Pittsburgh"),
    (170, 171, "Harrisburg"),
    (189, 191, "Philadelphia"),
    (197, 198, "Wilmington"),
    (200, 205, "Washington, D.C."),
    (206, 209, "Washington, D.C."),
    (210, 212, "Baltimore"),
    (220, 223, "Washington, D.C."),
    (230, 232, "Richmond"),
    (233, 235, "Norfolk"),
    (270, 274, "Greensboro"),
    (275, 277, "Raleigh-Durham"),
    (280, 282, "Charlotte"),
    (290, 292, "Columbia"),
    (300, 303, "Atlanta"),
    (320, 322, "Jacksonville"),
    (327, 328, "Orlando"),
    (330, 334, "Miami"),
    (335, 337, "Tampa"),
    (350, 352, "Birmingham"),
    (370, 372, "Nashville"),
    (380, 381, "Memphis"),
    (400, 402, "Louisville"),
    (405, 405, "Lexington"),
    (430, 432, "Columbus"),
    (440, 441, "Cleveland"),
    (442, 443, "Akron"),
    (450, 452, "Cincinnati"),
    (453, 454, "Dayton"),
    (460, 462, "Indianapolis"),
    (480, 483, "Detroit"),
    (488, 489, "Lansing"),
    (491, 491, "Ann Arbor"),
    (493, 495, "Grand Rapids"),
    (500, 503, "Des Moines"),
    (530, 532, "Milwaukee"),
    (535, 537, "Madison"),
    (550, 555, "Minneapolis-Saint Paul"),
    (600, 608, "Chicago"),
    (617, 618, "Champaign-Urbana"),
    (630, 633, "St. Louis"),
    (640, 641, "Kansas City"),
    (660, 662, "Kansas City"),
    (680, 681, "Omaha"),
    (700, 701, "New Orleans"),
    (722, 722, "Little Rock"),
    (730, 731, "Oklahoma City"),
    (740, 741, "Tulsa"),
    (750, 753, "Dallas"),
    (760, 761, "Fort Worth"),
    (770, 775, "Houston"),
    (780, 782, "San Antonio"),
    (786, 787, "Austin"),
    (798, 799, "El Paso"),
    (800, 803, "Denver"),
    (805, 805, "Boulder"),
    (840, 841, "Salt Lake City"),
    (850, 853, "Phoenix"),
    (856, 857, "Tucson"),
    (870, 871, "Albuquerque"),
    (885, 885, "El Paso"),
    (889, 891, "Las Vegas"),
    (894, 895, "Reno"),
    (900, 918, "Los Angeles"),
    (919, 921, "San Diego"),
    (922, 925, "Riverside"),
    (926, 928, "Orange County"),
    (930, 931, "Santa Barbara"),
    (940, 940, "San Francisco Bay"),
    (941, 941, "San Francisco"),
    (943, 944, "San Francisco Bay"),
    (945, 948, "Oakland"),
    (949, 949, "San Francisco Bay"),
    (950, 951, "San Jose"),
    (956, 958, "Sacramento"),
    (967, 968, "Honolulu"),
    (970, 972, "Portland"),
    (974, 974, "Eugene"),
    (980, 981, "Seattle"),
    (982, 984, "Seattle"),
    (995, 995, "Anchorage"),
]

_US_ZIP = re.compile(r"^(\d{5})(?:-?\d{4})?$")


def _lookup(table: list[tuple[int, int, str]], prefix: int) -> str | None:
    # Metro ranges may overlap (a smaller, later range refines a wider one); search them in order.
    for first, last, name in table:
        if first <= prefix <= last:
            return name
    return None


_STATE_STARTS = [first for first, _, _ in _STATE_RANGES]


def zip_state(zip_code: str) -> str | None:
    """The US state (or territory) of a 5-digit ZIP code, or None for non-US / malformed codes."""
    prefix = _prefix(zip_code)
    if prefix is None:
        return None
    i = bisect_right(_STATE_STARTS, prefix) - 1
    if i >= 0 and _STATE_RANGES[i][0] <= prefix <= _STATE_RANGES[i][1]:
        return _STATE_RANGES[i][2]
    return None


def zip_region(zip_code: str) -> str | None:
    """A readable region for a US ZIP code: "Tucson, Arizona area", or just "Arizona"; None when unknown or non-US."""
    state = zip_state(zip_code)
    if state is None:
        return None
    prefix = _prefix(zip_code)
    metro = _lookup(_METRO_RANGES, prefix) if prefix is not None else None
    if metro is None:
        return state
    if metro == "Washington, D.C.":  # the District and its Maryland / Virginia suburbs
        return "Washington, D.C. area"
    return f"{metro}, {state} area"


def _prefix(zip_code: object) -> int | None:
    if not isinstance(zip_code, str):
        return None
    match = _US_ZIP.match(zip_code.strip())
    return int(match.group(1)[:3]) if match else None
