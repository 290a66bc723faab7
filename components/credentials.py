"""Generated credentials, each with the character classes its consumer requires.

What each consumer accepts (read from its source):

* EMQX dashboard password: 8 to 64 ASCII characters from at least two of the groups letters,
  digits, special characters (``emqx_dashboard_admin:legal_password``; EMQX 5.8 asserts it when
  it creates the default admin, so an all-letter password stops the dashboard from starting).
* PostgreSQL passwords: anything, but they travel inside ``postgresql://`` URIs unescaped.
* EMQX API key and secret: one ``key:secret:role`` line of the bootstrap file, so no ``:``.
* Erlang node cookie: an atom on the ``erl -setcookie`` command line.
* Ingest bearer tokens and device passwords: HTTP header and MQTT CONNECT fields.

So every credential is letters and digits only (no escaping anywhere), with at least one
lower-case letter, one upper-case letter and one digit: a random 24-character password from
62 symbols is all letters about once in 70, which the dashboard rejects.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

MIN_LOWER = 1
MIN_UPPER = 1
MIN_NUMERIC = 1
# The generator's character-class settings; see `generated_password` for why changes to them
# are ignored on credentials that already exist.
CLASS_INPUTS = ["minLower", "minUpper", "minNumeric"]


def generated_password(
    resource_name: str,
    *,
    length: int,
    opts: pulumi.ResourceOptions,
    keep_existing: bool = True,
) -> random.RandomPassword:
    """A letters-and-digits secret with every character class present.

    pulumi-random replaces a password when its generator settings change. Credentials already
    deployed satisfy their consumers (only the dashboard password has a class rule), and
    rotating them would lock out devices and readers, so by default the class minimums apply to
    new credentials only (``ignore_changes``). ``keep_existing=False`` lets a stack's existing
    value be replaced: for a credential whose old value its consumer may have refused.
    """
    if length < 8:
        raise ValueError(f"{resource_name}: generated credentials have at least 8 characters (got {length})")
    options = opts if not keep_existing else pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(ignore_changes=CLASS_INPUTS)
    )
    return random.RandomPassword(
        resource_name,
        length=length,
        special=False,
        min_lower=MIN_LOWER,
        min_upper=MIN_UPPER,
        min_numeric=MIN_NUMERIC,
        opts=options,
    )
