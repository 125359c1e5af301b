"""REST endpoints of the catalogue (``catalogue``) and of datasets (``datasets``)."""
