"""Lightning callbacks of vseam-pl (head discovery, scale heatmaps)."""
