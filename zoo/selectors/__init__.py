"""Read queries over the catalogue (``catalogue``) and datasets (``datasets``)."""
