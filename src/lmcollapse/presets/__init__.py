"""YAML presets shipped with the package (`lmcollapse presets` lists them)."""
