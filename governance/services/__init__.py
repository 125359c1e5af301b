"""Every change governance makes, one module per concern, each writing its audit event.

``policy`` (what the reuse policy says of a request, and edits of the policy
tables), ``reuse`` (requests, reviews, revocation, expiry and the object
permissions they grant), ``risks`` (the risk register) and ``tokens`` (personal
access tokens).
"""
