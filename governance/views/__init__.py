"""governance pages, one module per concern: core (sign-in, audit log, reuse requests,
reviews, risks, tokens), notifications, lifecycle (incidents, re-review, dashboards)."""
