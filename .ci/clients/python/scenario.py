"""The README's "Try it" scenario through a Python client that openapi-python-client generated
from the live /openapi.json (.ci/clients/run.sh). Every call goes through the generated code,
with raise_on_unexpected_status on, and every answer must parse into its typed model: a status
the description does not list, a body its model cannot read, or an error where success was
expected fails the run.

Usage: python3 scenario.py BASE_URL OPERATOR_KEY PACKAGE_DIR (the generated `registrar_client`
lives in PACKAGE_DIR)."""

import datetime
import sys

BASE, OPERATOR, PACKAGE_DIR = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, PACKAGE_DIR)

from registrar_client import AuthenticatedClient  # noqa: E402
from registrar_client.api.administration import create_key, create_tenant  # noqa: E402
from registrar_client.api.catalog import (  # noqa: E402
    create_contact,
    create_course,
    create_course_offering,
    create_registration_process,
    patch_order,
)
from registrar_client.api.course_registrations import (  # noqa: E402
    batch_course_registrations,
    delete_course_registration,
    generate_order,
    generate_registration,
    get_course_registration,
    lookup_by_course_offering,
    lookup_by_order,
    lookup_by_student,
    patch_course_registration,
    preview_email,
    search_course_registrations,
)
from registrar_client.api.service import list_outbox  # noqa: E402
from registrar_client.models import (  # noqa: E402
    BatchCourseRegistrationsBody,
    BatchDelete,
    BatchDeleteOp,
    BatchPatch,
    BatchPatchOp,
    BatchResult,
    Contact,
    ContactInput,
    Course,
    CourseInput,
    CourseOffering,
    CourseOfferingInput,
    CourseRegistration,
    CreateKeyBody,
    CreateKeyBodyRole,
    CreateKeyResponse201,
    CreateTenantBody,
    Error,
    GenerateOrderBodyType0,
    JsonPatchAddOrReplace,
    JsonPatchAddOrReplaceOp,
    JsonPatchTest,
    JsonPatchTestOp,
    ListOutboxResponse200,
    LookupByCourseOfferingResponse200,
    LookupByOrderResponse200,
    LookupByStudentFieldsItem,
    LookupByStudentResponse200,
    SearchCourseRegistrationsResponse200,
    Order,
    PreviewEmailBody,
    RegistrationProcess,
    RegistrationProcessInput,
    RegistrationProcessInputDefaultStatusType0,
    SearchCourseRegistrationsBody,
    SearchCourseRegistrationsBodyStatusType0Item,
    SearchCourseRegistrationsFieldsToReturnItem,
    SentEmail,
    Tenant,
)
from registrar_client.types import UNSET  # noqa: E402


def client(key):
    return AuthenticatedClient(
        base_url=BASE, token=key, raise_on_unexpected_status=True, timeout=30.0
    )


def ok(response, model, status=200):
    """The typed answer of a successful call: its status and its model, or the run fails."""
    assert response.status_code == status, (response.status_code, response.content)
    assert isinstance(response.parsed, model), (type(response.parsed), response.content)
    return response.parsed


def refused(response, status, code):
    """An error answer: the one shared Error model, with the expected status and code."""
    assert response.status_code == status, (response.status_code, response.content)
    assert isinstance(response.parsed, Error), (type(response.parsed), response.content)
    assert response.parsed.error.code == code, response.parsed.error.code
    return response.parsed


def replace(path, value):
    return JsonPatchAddOrReplace(op=JsonPatchAddOrReplaceOp.REPLACE, path=path, value=value)


def add(path, value):
    return JsonPatchAddOrReplace(op=JsonPatchAddOrReplaceOp.ADD, path=path, value=value)


operator = client(OPERATOR)
tenant_id = "py-" + datetime.datetime.now(datetime.timezone.utc).strftime("%H%M%S%f")

# A tenant and a write key for it.
ok(create_tenant.sync_detailed(client=operator, body=CreateTenantBody(id=tenant_id)), Tenant, 201)
made = ok(
    create_key.sync_detailed(
        tenant_id, client=operator, body=CreateKeyBody(role=CreateKeyBodyRole.WRITE, name="me")
    ),
    CreateKeyResponse201,
    201,
)
api = client(made.key)

# The catalog: a course, an offering with 12 seats at 250, a contact, a registration process.
course = ok(
    create_course.sync_detailed(
        tenant_id, client=api, body=CourseInput(name="Workplace Safety", code="SAF-101")
    ),
    Course,
)
offering = ok(
    create_course_offering.sync_detailed(
        tenant_id,
        client=api,
        body=CourseOfferingInput(
            course_id=course.id,
            start_date=datetime.datetime(2026, 3, 2, 9, tzinfo=datetime.timezone.utc),
            capacity=12,
            price=250,
        ),
    ),
    CourseOffering,
)
assert offering.capacity == 12 and offering.price == 250


def new_contact(first, last):
    return ok(
        create_contact.sync_detailed(
            tenant_id,
            client=api,
            body=ContactInput(
                first_name=first, last_name=last, email_address=f"{first.lower()}@example.org"
            ),
        ),
        Contact,
    )


contact = new_contact("Ada", "Lovelace")
assert contact.name == "Ada Lovelace"
process = ok(
    create_registration_process.sync_detailed(
        tenant_id,
        client=api,
        body=RegistrationProcessInput(
            name="Web sign-up",
            course_id=course.id,
            course_offering_id=offering.id,
            default_status=RegistrationProcessInputDefaultStatusType0.REGISTERED,
        ),
    ),
    RegistrationProcess,
)

# A registration from the process for the contact; a dry run first.
dry = ok(
    generate_registration.sync_detailed(
        tenant_id, process.id, contact.id, client=api, dry_run=True
    ),
    CourseRegistration,
)
assert dry.number is UNSET
answer = generate_registration.sync_detailed(tenant_id, process.id, contact.id, client=api)
registration = ok(answer, CourseRegistration)
assert answer.headers["etag"] == '"1"'
assert registration.status.value == "registered" and registration.student_id == contact.id
got = get_course_registration.sync_detailed(tenant_id, registration.id, client=api)
assert ok(got, CourseRegistration).name == "Ada Lovelace"
assert got.headers["etag"] == '"1"'

# Its order; the order lookup; a payment recorded on the order.
order = ok(
    generate_order.sync_detailed(
        tenant_id, client=api, body=GenerateOrderBodyType0(id=registration.id)
    ),
    Order,
)
assert order.total == 250 and order.status.value == "awaiting payment"
page = ok(lookup_by_order.sync_detailed(tenant_id, order.id, client=api), LookupByOrderResponse200)
assert page.count == 1 and page.items[0].id == registration.id
assert isinstance(page.items[0], CourseRegistration)
paid = ok(
    patch_order.sync_detailed(
        tenant_id,
        order.id,
        client=api,
        body=[replace("/amount_paid", 250), replace("/status", "completed")],
    ),
    Order,
)
assert paid.balance_due == 0

# A lookup with fields (sent as a list), then a patch pinned to the current version.
page = ok(
    lookup_by_student.sync_detailed(
        tenant_id,
        contact.id,
        client=api,
        fields=[
            LookupByStudentFieldsItem.NAME,
            LookupByStudentFieldsItem.STATUS,
            LookupByStudentFieldsItem.ORDER_STATUS,
        ],
    ),
    LookupByStudentResponse200,
)
item = page.items[0]
assert item.order_status.value == "completed" and item.order_id is UNSET, item.to_dict()
current = get_course_registration.sync_detailed(tenant_id, registration.id, client=api)
etag = current.headers["etag"]
assert etag == '"3"', etag
patched = ok(
    patch_course_registration.sync_detailed(
        tenant_id,
        registration.id,
        client=api,
        if_match=etag,
        body=[
            JsonPatchTest(op=JsonPatchTestOp.TEST, path="/sys_version", value=3),
            add("/completion_percentage", 50),
        ],
    ),
    CourseRegistration,
)
assert patched.completion_percentage == 50 and patched.sys_version == 4
refused(
    patch_course_registration.sync_detailed(
        tenant_id,
        registration.id,
        client=api,
        if_match=etag,
        body=[add("/completion_percentage", 60)],
    ),
    409,
    "version_conflict",
)

# The confirmation mail, kept in the outbox.
sent = ok(
    preview_email.sync_detailed(
        tenant_id,
        client=api,
        body=PreviewEmailBody(
            registration_id=registration.id, destination_email_address="ada@example.org"
        ),
    ),
    SentEmail,
)
assert sent.transport.value == "outbox"
outbox = ok(list_outbox.sync_detailed(tenant_id, client=api), ListOutboxResponse200)
assert outbox.count == 1 and outbox.items[0].message_id == sent.message_id

# More students, then the offering's registrations walked page by page (2 a page), by the
# body's LastEvaluatedKey; the X-Last-Evaluated-Key header says the same.
for first in ["Grace", "Alan", "Edsger", "Barbara"]:
    student = new_contact(first, "Example")
    ok(
        generate_registration.sync_detailed(tenant_id, process.id, student.id, client=api),
        CourseRegistration,
    )
seen, start, pages = [], UNSET, 0
while True:
    answer = lookup_by_course_offering.sync_detailed(
        tenant_id, offering.id, client=api, limit=2, exclusive_start_key=start
    )
    page = ok(answer, LookupByCourseOfferingResponse200)
    pages += 1
    seen.extend(item.id for item in page.items)
    if page.last_evaluated_key is UNSET:
        assert "x-last-evaluated-key" not in answer.headers
        break
    assert answer.headers["x-last-evaluated-key"] == page.last_evaluated_key
    assert 'rel="next"' in answer.headers["link"]
    start = page.last_evaluated_key
assert len(seen) == 5 and len(set(seen)) == 5 and pages == 3, (seen, pages)

# Search: every registered registration of the course, two fields each, walked likewise.
found, start = [], UNSET
while True:
    page = ok(
        search_course_registrations.sync_detailed(
            tenant_id,
            client=api,
            body=SearchCourseRegistrationsBody(
                course_id=[course.id],
                status=[SearchCourseRegistrationsBodyStatusType0Item.REGISTERED],
            ),
            fields_to_return=[
                SearchCourseRegistrationsFieldsToReturnItem.NAME,
                SearchCourseRegistrationsFieldsToReturnItem.STATUS,
            ],
            limit=3,
            exclusive_start_key=start,
        ),
        SearchCourseRegistrationsResponse200,
    )
    found.extend(page.items)
    if page.last_evaluated_key is UNSET:
        break
    start = page.last_evaluated_key
assert sorted(r.id for r in found) == sorted(seen), found
assert all(r.student_id is UNSET and r.status.value == "registered" for r in found)

# Batch: a patch and a delete, each on its own.
result = ok(
    batch_course_registrations.sync_detailed(
        tenant_id,
        client=api,
        body=BatchCourseRegistrationsBody(
            operations=[
                BatchPatch(op=BatchPatchOp.PATCH, id=seen[1], patch=[add("/notes", "batch")]),
                BatchDelete(op=BatchDeleteOp.DELETE, id=seen[2]),
            ],
            atomic=True,
        ),
    ),
    BatchResult,
)
assert result.success_count == 2 and [r.status for r in result.results] == [200, 200]

# Delete: refused while the order is live; void the order first.
refused(
    delete_course_registration.sync_detailed(tenant_id, registration.id, client=api),
    409,
    "has_dependants",
)
ok(
    patch_order.sync_detailed(tenant_id, order.id, client=api, body=[replace("/status", "void")]),
    Order,
)
deleted = ok(
    delete_course_registration.sync_detailed(tenant_id, registration.id, client=api), str
)
assert deleted == registration.id
refused(
    get_course_registration.sync_detailed(tenant_id, registration.id, client=api),
    404,
    "not_found",
)
print("python client: the README scenario passed")
