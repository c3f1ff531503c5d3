"""Column layouts, class names and the label mapping of CICIoMT2024.

The dataset carries no label column: the class of every flow comes from the
name of the CSV file it sits in (``<Class><capture digits>_<train|test>.pcap.csv``).
Two column layouts exist: the original release (v1, 45 features) and a newer
one (v2, 39 features) that adds ``Time_To_Live`` and drops seven v1 columns.
"""

from __future__ import annotations

import re
from pathlib import Path

# Order as in the CSV headers of each release. Names contain spaces, and
# "Magnitue" is misspelt in the data itself, so it is kept that way.
V1_COLUMNS: tuple[str, ...] = (
    "Header_Length", "Protocol Type", "Duration", "Rate", "Srate", "Drate",
    "fin_flag_number", "syn_flag_number", "rst_flag_number", "psh_flag_number",
    "ack_flag_number", "ece_flag_number", "cwr_flag_number", "ack_count",
    "syn_count", "fin_count", "rst_count", "HTTP", "HTTPS", "DNS", "Telnet",
    "SMTP", "SSH", "IRC", "TCP", "UDP", "DHCP", "ARP", "ICMP", "IGMP", "IPv",
    "LLC", "Tot sum", "Min", "Max", "AVG", "Std", "Tot size", "IAT", "Number",
    "Magnitue", "Radius", "Covariance", "Variance", "Weight",
)

V2_COLUMNS: tuple[str, ...] = (
    "Header_Length", "Protocol Type", "Time_To_Live", "Rate",
    "fin_flag_number", "syn_flag_number", "rst_flag_number", "psh_flag_number",
    "ack_flag_number", "ece_flag_number", "cwr_flag_number", "ack_count",
    "syn_count", "fin_count", "rst_count", "HTTP", "HTTPS", "DNS", "Telnet",
    "SMTP", "SSH", "IRC", "TCP", "UDP", "DHCP", "ARP", "ICMP", "IGMP", "IPv",
    "LLC", "Tot sum", "Min", "Max", "AVG", "Std", "Tot size", "IAT", "Number",
    "Variance",
)

LAYOUTS: dict[str, tuple[str, ...]] = {"v1": V1_COLUMNS, "v2": V2_COLUMNS}

# The 19 classes in a fixed order: label indices and report rows follow it.
CLASSES: tuple[str, ...] = (
    "Benign",
    "ARP_Spoofing",
    "MQTT-DDoS-Connect_Flood",
    "MQTT-DDoS-Publish_Flood",
    "MQTT-DoS-Connect_Flood",
    "MQTT-DoS-Publish_Flood",
    "MQTT-Malformed_Data",
    "Recon-OS_Scan",
    "Recon-Ping_Sweep",
    "Recon-Port_Scan",
    "Recon-VulScan",
    "TCP_IP-DDoS-ICMP",
    "TCP_IP-DDoS-SYN",
    "TCP_IP-DDoS-TCP",
    "TCP_IP-DDoS-UDP",
    "TCP_IP-DoS-ICMP",
    "TCP_IP-DoS-SYN",
    "TCP_IP-DoS-TCP",
    "TCP_IP-DoS-UDP",
)

CATEGORIES: tuple[str, ...] = ("Benign", "Spoofing", "MQTT", "Recon", "DDoS", "DoS")

BINARY_LABELS: tuple[str, ...] = ("Benign", "Attack")

TASKS: tuple[str, ...] = ("binary", "category", "attack")

LABEL_COLUMNS: dict[str, str] = {"binary": "binary", "category": "category", "attack": "class"}

_FILE_NAME = re.compile(
    r"^(?P<stem>.+?)(?:_(?P<split>train|test))?(?:\.pcap)?\.csv(?:\.gz)?$",
    re.IGNORECASE,
)


def layout_of(columns: list[str]) -> str:
    """Return the name of the layout whose columns these are, in any order."""
    for name, layout_columns in LAYOUTS.items():
        if set(columns) == set(layout_columns):
            return name
    raise ValueError(f"columns {columns} match neither the v1 nor the v2 layout")


def layout_containing(columns: list[str]) -> str:
    """Return the layout whose columns include all of ``columns`` (some may have been dropped).

    Returns ``"v1"`` or ``"v2"``, or ``"v1/v2"`` when only columns common to both remain.
    """
    matches = [name for name, layout_columns in LAYOUTS.items() if set(columns) <= set(layout_columns)]
    if not matches:
        raise ValueError(f"columns {columns} belong to neither the v1 nor the v2 layout")
    return "/".join(matches)


def category_of(class_name: str) -> str:
    """Return the category (one of ``CATEGORIES``) of one of the 19 classes."""
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; known classes: {', '.join(CLASSES)}")
    if class_name == "Benign":
        return "Benign"
    if class_name == "ARP_Spoofing":
        return "Spoofing"
    if class_name.startswith("MQTT-"):
        return "MQTT"
    if class_name.startswith("Recon-"):
        return "Recon"
    if class_name.startswith("TCP_IP-DDoS-"):
        return "DDoS"
    return "DoS"


def binary_of(class_name: str) -> str:
    """Return ``"Benign"`` or ``"Attack"`` for one of the 19 classes."""
    return "Benign" if category_of(class_name) == "Benign" else "Attack"


def task_label_of(class_name: str, task: str) -> str:
    """Return a class's label for a task: the class, its category, or Benign/Attack."""
    if task == "binary":
        return binary_of(class_name)
    if task == "category":
        return category_of(class_name)
    return class_name


def task_labels(task: str) -> tuple[str, ...]:
    """Return every label name of a task, in report order."""
    if task == "binary":
        return BINARY_LABELS
    if task == "category":
        return CATEGORIES
    if task == "attack":
        return CLASSES
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def is_csv_name(path: Path) -> bool:
    """Tell whether a file name looks like a (possibly gzip-compressed) CSV file."""
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def class_from_file_name(path: Path) -> str:
    """Return the class of the flows in a release file, read from its name.

    ``TCP_IP-DDoS-ICMP3_train.pcap.csv`` is class ``TCP_IP-DDoS-ICMP``: the
    capture digits and the split suffix are dropped. Matching is exact, so a
    renamed file fails here instead of being put in the wrong class.
    """
    match = _FILE_NAME.match(path.name)
    stem = match.group("stem") if match else path.name
    class_name = stem.rstrip("0123456789")
    if match is None or class_name not in CLASSES:
        raise ValueError(
            f"{path}: the file name matches no known class. Release files are named "
            f"'<Class><capture digits>_<train|test>.pcap.csv', for example "
            f"'TCP_IP-DDoS-ICMP3_train.pcap.csv'. Rename the file or move it out of the "
            f"input folder. Known classes: {', '.join(CLASSES)}"
        )
    return class_name
