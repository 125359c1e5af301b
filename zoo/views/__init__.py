"""HTML pages of the catalogue (``catalogue``) and of datasets (``datasets``)."""
