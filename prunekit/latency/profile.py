"""Device profiles: the schema (`prunekit.latency.schema`) and the files (`prunekit.latency.store`).

This module is the one import for both: `from prunekit.latency.profile import load_profile, Profile`.
"""

from prunekit.latency.schema import (
    SCHEMA_VERSION,
    Constant,
    EstimatedProvenance,
    MeasuredProvenance,
    MissingSignatureError,
    ModelRecord,
    OpCost,
    Precision,
    Profile,
    ProfileSummary,
    Provenance,
    TableEntry,
    dump_json,
)
from prunekit.latency.store import (
    find_profile_path,
    known_targets,
    list_profiles,
    load_profile,
    merge_profiles,
    read_profile_file,
    save_profile,
    shipped_dir,
    user_dir,
)

__all__ = [
    "SCHEMA_VERSION",
    "Constant",
    "EstimatedProvenance",
    "MeasuredProvenance",
    "MissingSignatureError",
    "ModelRecord",
    "OpCost",
    "Precision",
    "Profile",
    "ProfileSummary",
    "Provenance",
    "TableEntry",
    "dump_json",
    "find_profile_path",
    "known_targets",
    "list_profiles",
    "load_profile",
    "merge_profiles",
    "read_profile_file",
    "save_profile",
    "shipped_dir",
    "user_dir",
]
