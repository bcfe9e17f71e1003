"""Runs scim2-tester, an independent SCIM 2.0 conformance checker, against a SCIM server, then a
few checks of filters and paging whose expected answers come from scim2-models (the checker's
own model library), not from this project.

Usage: python tests/scim_conformance.py BASE_URL TOKEN

Prints one line per check and exits 1 if any check fails that is not in KNOWN below. Called by
tests/scim-conformance.sh, which starts the project's simulator.

One adaptation: the checker fills `userName` with a random UUID, and Notion (like the simulator)
requires an email there, so userName is generated as `<uuid>@example.com`. Without it every
User check fails at creation with 400 invalidValue, which is the behaviour we want.
"""

import sys
import uuid

import scim2_tester.checkers.patch_add as patch_add
import scim2_tester.checkers.patch_replace as patch_replace
import scim2_tester.filling as filling
from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import SearchRequest
from scim2_tester import Status, check_server

# Checks that fail on purpose: (resource type, check, words in the reason) -> why.
KNOWN = {
    ("User", "search_with_attributes", "no such endpoint"):
        "POST /.search (RFC 7644 3.4.3, optional) is not documented by Notion",
    ("Group", "search_with_attributes", "no such endpoint"):
        "POST /.search (RFC 7644 3.4.3, optional) is not documented by Notion",
    ("User", "check_remove_attribute", "'emails'"):
        "a Notion account always has an email: with no emails stored, the userName is shown",
    ("User", "check_remove_attribute", "'active'"):
        "every account is active or not; deactivation is replace active=false",
    ("User", "check_remove_attribute", "notion:2.0:User'"):
        "every member has a Notion role; removing it has no documented meaning",
    ("User", "check_remove_attribute", "notion:2.0:User:role'"):
        "every member has a Notion role; removing it has no documented meaning",
    ("Group", "check_add_attribute", "'members'"):
        "the checker compares members exactly; the server adds the readOnly `display`",
    ("Group", "check_replace_attribute", "'members'"):
        "the checker compares members exactly; the server adds the readOnly `display`",
}

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE, Status.SKIPPED}

_generate = filling.generate_random_value


def _email_user_name(context, path, *args, **kwargs):
    value = _generate(context, path, *args, **kwargs)
    if value is not None and str(path).lower().endswith("username"):
        return f"{uuid.uuid4()}@example.com"
    return value


for module in (filling, patch_add, patch_replace):
    module.generate_random_value = _email_user_name


def known(result):
    for (rtype, title, words), why in KNOWN.items():
        if result.resource_type == rtype and result.title == title and words in (result.reason or ""):
            return why
    return None


def listed(client, model, **params):
    reply = client.query(model, query_parameters=SearchRequest[model](**params))
    return reply


def filters_and_paging(client):
    """(name, passed, detail) for filters and paging, judged by scim2-models."""
    user_model = client.get_resource_model("User")
    group_model = client.get_resource_model("Group")
    run = uuid.uuid4().hex[:8]
    out = []
    made = []
    for i in range(5):
        user = user_model(
            user_name=f"conf-{run}-{i}@example.com",
            name={"given_name": "Ada" if i % 2 else "Grace", "family_name": f"N{i}"},
            emails=[{"value": f"conf-{run}-{i}@example.com", "primary": True}],
            active=True,
        )
        made.append(client.create(user))
    everyone = listed(client, user_model, count=100).resources or []
    mine = [u for u in everyone if u.user_name.startswith(f"conf-{run}-")]
    out.append(("users created are listed", len(mine) == 5, f"{len(mine)} of 5"))

    for text in [
        f'userName eq "conf-{run}-3@example.com"',
        f'userName eq "CONF-{run}-3@EXAMPLE.COM"',
        f'userName sw "conf-{run}-"',
        f'emails.value co "{run}-4@"',
        f'emails[value ew "{run}-1@example.com"]',
        f'name.givenName eq "Ada" and userName sw "conf-{run}"',
        f'userName sw "conf-{run}" and not (name.givenName eq "Ada")',
        f'userName pr and userName sw "conf-{run}-2"',
    ]:
        parsed = SearchRequest[user_model](filter=text).filter
        want = sorted(u.id for u in everyone if parsed.match(u))
        got = listed(client, user_model, filter=text, count=100)
        got_ids = sorted(u.id for u in (got.resources or []))
        ok = got_ids == want and got.total_results == len(want) and len(want) > 0
        out.append((f"filter {text}", ok, f"{len(got_ids)} found, {len(want)} expected"))

    total = len(everyone)
    page = listed(client, user_model, start_index=2, count=2)
    ids = [u.id for u in page.resources or []]
    out.append((
        "startIndex=2&count=2 is the second and third resource",
        ids == [u.id for u in everyone[1:3]] and page.start_index == 2
        and page.items_per_page == 2 and page.total_results == total,
        f"startIndex {page.start_index}, itemsPerPage {page.items_per_page}",
    ))
    page = listed(client, user_model, start_index=total + 1, count=10)
    out.append((
        "startIndex past the end is an empty page with the total",
        not page.resources and page.total_results == total,
        f"{len(page.resources or [])} resources, total {page.total_results}",
    ))
    page = listed(client, user_model, count=0)
    out.append((
        "count=0 answers only the total",
        not page.resources and page.total_results == total,
        f"{len(page.resources or [])} resources, total {page.total_results}",
    ))

    group = client.create(group_model(display_name=f"Conformance {run}"))
    text = f'displayName eq "conformance {run.upper()}"'
    found = listed(client, group_model, filter=text)
    out.append((
        "Group filter displayName eq ignores case",
        [g.id for g in found.resources or []] == [group.id],
        f"{found.total_results} found",
    ))
    client.delete(group)
    for user in made:
        client.delete(user)
    return out


def main():
    url, token = sys.argv[1], sys.argv[2]
    client = SyncSCIMClient(Client(base_url=url, headers={"Authorization": f"Bearer {token}"}))
    passed = failed = deviations = 0
    print("== scim2-tester")
    for result in check_server(client):
        why = known(result)
        if result.status in PASSING:
            verdict = "PASS"
            passed += 1
        elif why:
            verdict = "KNOWN"
            deviations += 1
        else:
            verdict = "FAIL"
            failed += 1
        detail = why or (result.reason or "").splitlines()[0:1]
        detail = detail if isinstance(detail, str) else "".join(detail)
        print(f"{verdict:5} {result.status.name:10} {result.resource_type or '-':5} {result.title}: {detail[:160]}")
    print("== filters and paging (expected answers from scim2-models)")
    for name, ok, detail in filters_and_paging(client):
        passed += 1 if ok else 0
        failed += 0 if ok else 1
        print(f"{'PASS' if ok else 'FAIL':5} {name}: {detail}")
    print(f"{deviations} deliberate deviations (see KNOWN)")
    print(f"conformance: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
