"""Schemathesis hooks for .ci/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Free-form JSON in a registration (the values inside `custom_field_values` items, and
`sys_calculated_field_errors`) is described as `{}`: the recursive schema that said "every
nested string holds no control character but newline, carriage return and tab; every nested key
none at all" made code generators drop the whole record (docs/API.md, "Clients"). The server
still enforces that rule, and no non-recursive JSON Schema can state it. So generated bodies get
those characters taken out of the free-form parts before they are sent. Only parts whose schema
is `{}` are touched: `custom_field_id` and the item keys keep their own schema (and their
negative cases).
"""

import re

import schemathesis

# What the server refuses in a nested string (Unicode Cc but layout) and in a key (all Cc).
CONTROL_BUT_LAYOUT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean(value):
    if isinstance(value, str):
        return CONTROL_BUT_LAYOUT.sub("", value)
    if isinstance(value, list):
        return [clean(item) for item in value]
    if isinstance(value, dict):
        return {CONTROL.sub("", key): clean(item) for key, item in value.items()}
    return value


def clean_registration(body):
    if not isinstance(body, dict):
        return
    items = body.get("custom_field_values")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                for key in list(item):
                    if key != "custom_field_id":
                        item[key] = clean(item[key])
    errors = body.get("sys_calculated_field_errors")
    if isinstance(errors, list):
        body["sys_calculated_field_errors"] = [clean(item) for item in errors]


@schemathesis.hook
def map_case(ctx, case):
    clean_registration(case.body)
    return case
