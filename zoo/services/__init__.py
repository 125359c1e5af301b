"""Every change to the catalogue (``catalogue``) and to datasets (``datasets``)."""
