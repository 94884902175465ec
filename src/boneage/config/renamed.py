"""Config keys that were renamed: the earlier name, still read (with a note), and the current one."""

RENAMED_KEYS = {"data.split.age_bin_width": "data.split.stratum_width"}  # earlier name -> current
