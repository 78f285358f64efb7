"""One module per data set; each exposes ``load(cfg: DataConfig) -> CaseTable`` (ISIC: one per year)."""
