"""Who may do what: authentication, authorisation, quotas, TLS (all off by default).

One concept per module: :mod:`.principal` (who is calling, the contract every other part
reads), authentication methods, authorisation rules, quotas, TLS. The HTTP layer runs
authentication in a middleware; handlers ask for authorisation with the resources a request
names (topics, groups, subjects) once those are parsed.
"""
