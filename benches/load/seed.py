#!/usr/bin/env python3
"""Seeds one target (registrar or PocketBase) through its HTTP API with the load benchmark's
data set, and writes the files the wrk/oha scenarios read.

Both targets get the same records, built deterministically from their index: contacts
(students), courses, course offerings, registrations of ~2 KB, and a separate pool of contacts
that the create scenario registers (so a create never collides with a seeded registration
under registrar's one-registration-per-(student, offering) rule, or PocketBase's unique
index that mirrors it).

    seed.py registrar  --url http://127.0.0.1:PORT --auth 'Bearer rk_…' --out DIR [sizes]
    seed.py pocketbase --url http://127.0.0.1:PORT --auth '<superuser token>' --out DIR [sizes]

Files written to DIR: auth (the Authorization header value), registrations.txt (ids),
students.txt (seeded student ids, each with registrations/students registrations),
searches.txt (course id, status), window.txt (the search's date window),
offerings.txt (offering id, course id, course date), create_students.txt (the create pool),
create_template.json (the create scenario's body). Only the standard library is used.
"""

import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

STATUSES = ["registered", "draft", "completed", "cancelled"]
CITIES = ["London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague"]
TITLES = ["Engineer", "Nurse", "Electrician", "Site Manager", "Accountant", "Teacher"]
WORDS = (
    "safety training course module attendance assessment practical theory workshop "
    "certificate renewal equipment hazard procedure inspection report supervisor site "
    "first aid fire evacuation manual handling ladder scaffold electrical confined space"
).split()
YEAR_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
# The search scenario's date window: about half of the registrations' dates fall in it.
SEARCH_FROM = datetime(2025, 3, 1, tzinfo=timezone.utc)
SEARCH_TO = datetime(2025, 8, 31, 23, 59, 59, tzinfo=timezone.utc)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pb_date(t):
    """PocketBase stores and compares dates as 'YYYY-MM-DD HH:MM:SS.sssZ' text."""
    return t.strftime("%Y-%m-%d %H:%M:%S.000Z")


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def contact(i):
    rng = random.Random(f"contact-{i}")
    first, last = rng.choice(["Ada", "Alan", "Grace", "Edsger", "Barbara", "Ken"]), f"Student{i:06d}"
    return {
        "first_name": first,
        "last_name": last,
        "name": f"{first} {last}",
        "email_address": f"{first.lower()}.{last.lower()}@example.org",
        "phone_number": f"+44 20 7946 {i % 10000:04d}",
        "city": rng.choice(CITIES),
        "state": "State " + str(i % 50),
        "country": "GB",
        "job_title": rng.choice(TITLES),
        "organization_id": f"org-{i % 300}",
    }


def course(c):
    rng = random.Random(f"course-{c}")
    return {"name": f"Course {c:04d}", "code": f"C-{c:04d}", "description": words(rng, 30)}


def offering(o, course_id, courses):
    start = YEAR_START + timedelta(days=(o * 7) % 365, hours=9)
    return {
        "course_id": course_id,
        "name": f"Offering {o:05d} of course {o % courses:04d}",
        "start_date": start,
        "end_date": start + timedelta(days=2),
        "price": float(100 + o % 400),
        "training_provider_id": f"tp-{o % 7}",
        "training_location_id": f"loc-{o % 23}",
        "webinar_join_url": f"https://meet.example.org/j/{o:08d}",
    }


def registration(i, student, offering_row, student_index, rng_key):
    """A ~2 KB registration (about 2 KB as registrar answers a GET, with its sys_* fields)."""
    rng = random.Random(rng_key)
    person = contact(student_index)
    course_id, offering_id, course_date = offering_row
    date = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
    return {
        "first_name": person["first_name"],
        "last_name": person["last_name"],
        "name": person["name"],
        "email_address": person["email_address"],
        "city": person["city"],
        "state": person["state"],
        "country": person["country"],
        "job_title": person["job_title"],
        "student_id": student,
        "course_id": course_id,
        "course_offering_id": offering_id,
        "status": STATUSES[rng.randrange(len(STATUSES))],
        "date": date,
        "course_date": course_date,
        "arrival_date": course_date - timedelta(hours=1),
        "departure_date": course_date + timedelta(days=2),
        "order_total": float(100 + i % 400),
        "completion_percentage": rng.randrange(101),
        "application_id": f"app-{i:07d}",
        "event_registration_id": f"evt-{i:07d}",
        "training_provider_id": f"tp-{i % 7}",
        "training_location_id": f"loc-{i % 23}",
        "training_provider_billing_name": "Provider Billing Ltd",
        "webinar_join_url": f"https://meet.example.org/j/{i:08d}",
        "notes": words(rng, 95),
        "custom_field_values": [
            {"custom_field_id": f"cf-{k}", "value": words(rng, 3)} for k in range(6)
        ],
    }


class Target:
    """One HTTP server; a keep-alive connection per seeding thread."""

    def __init__(self, url, auth):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.auth = auth
        self.local = threading.local()

    def call(self, method, path, body=None, ok=(200, 201)):
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            fresh = conn is None
            if fresh:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            headers = {"Authorization": self.auth}
            data = None
            if body is not None:
                data = json.dumps(body, default=self.encode).encode()
                headers["Content-Type"] = "application/json"
            try:
                conn.request(method, path, data, headers)
                resp = conn.getresponse()
                text = resp.read()
            except (http.client.HTTPException, OSError) as e:
                # A kept-alive connection the server closed while idle: reconnect and retry.
                # On a fresh connection the request may have been applied: give up instead.
                conn.close()
                self.local.conn = None
                if fresh:
                    raise SystemExit(f"{method} {path}: {e}")
                time.sleep(0.05 * (attempt + 1))
                continue
            if resp.status not in ok:
                raise SystemExit(f"{method} {path}: {resp.status} {text[:500]!r}")
            return json.loads(text) if text else None
        raise SystemExit(f"{method} {path}: no answer after 5 attempts")

    def encode(self, value):
        if isinstance(value, datetime):
            return self.date(value)
        raise TypeError(value)


class Registrar(Target):
    tenant = "bench"

    def date(self, t):
        return rfc3339(t)

    def setup(self):
        pass

    def create(self, kind, body):
        path = {
            "contact": "/contacts/",
            "course": "/courses/",
            "offering": "/courseOfferings/",
            "registration": "/courseRegistrations/",
        }[kind]
        return self.call("POST", path + self.tenant, body)["id"]


class PocketBase(Target):
    def date(self, t):
        return pb_date(t)

    def setup(self):
        """Collections equivalent to registrar's, with indexes on every lookup field.

        Rules stay null (superusers only), so every request is authenticated, as on
        registrar. Relations are checked on write, like registrar's references."""

        def text(name, max_len=0):
            return {"name": name, "type": "text", "max": max_len}

        def autodates():
            return [
                {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
                {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
            ]

        def collection(name, fields, indexes=()):
            body = {"name": name, "type": "base", "fields": fields + autodates(), "indexes": list(indexes)}
            return self.call("POST", "/api/collections", body)["id"]

        contacts = collection(
            "contacts",
            [text(f) for f in contact(0)],
        )
        courses = collection("courses", [text("name"), text("code"), text("description")])
        offerings = collection(
            "courseOfferings",
            [
                {"name": "course_id", "type": "relation", "collectionId": courses, "maxSelect": 1, "required": True},
                text("name"),
                {"name": "start_date", "type": "date"},
                {"name": "end_date", "type": "date"},
                {"name": "price", "type": "number"},
                text("training_provider_id"),
                text("training_location_id"),
                {"name": "webinar_join_url", "type": "url"},
            ],
            ["CREATE INDEX idx_offerings_course ON courseOfferings (course_id)"],
        )
        fields = []
        for name in registration(0, "x", ("c", "o", YEAR_START), 0, 0):
            if name in ("student_id", "course_id", "course_offering_id"):
                target = {"student_id": contacts, "course_id": courses, "course_offering_id": offerings}[name]
                fields.append({"name": name, "type": "relation", "collectionId": target, "maxSelect": 1, "required": True})
            elif name in ("date", "course_date", "arrival_date", "departure_date"):
                fields.append({"name": name, "type": "date"})
            elif name in ("order_total", "completion_percentage"):
                fields.append({"name": name, "type": "number"})
            elif name == "status":
                fields.append({"name": name, "type": "select", "values": STATUSES, "maxSelect": 1})
            elif name == "custom_field_values":
                fields.append({"name": name, "type": "json", "maxSize": 65536})
            elif name == "webinar_join_url":
                fields.append({"name": name, "type": "url"})
            else:
                fields.append(text(name, 65536 if name == "notes" else 0))
        collection(
            "registrations",
            fields,
            [
                "CREATE INDEX idx_reg_student ON registrations (student_id)",
                "CREATE INDEX idx_reg_offering ON registrations (course_offering_id)",
                "CREATE INDEX idx_reg_course_status_date ON registrations (course_id, status, date)",
                "CREATE INDEX idx_reg_status ON registrations (status)",
                # registrar's rule: one non-cancelled registration per (student, offering).
                "CREATE UNIQUE INDEX idx_reg_slot ON registrations (student_id, course_offering_id) "
                "WHERE status != 'cancelled'",
            ],
        )

    def create(self, kind, body):
        name = {
            "contact": "contacts",
            "course": "courses",
            "offering": "courseOfferings",
            "registration": "registrations",
        }[kind]
        return self.call("POST", f"/api/collections/{name}/records", body)["id"]


def parallel(fn, items, workers):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=["registrar", "pocketbase"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--auth", required=True, help="the Authorization header value")
    ap.add_argument("--out", required=True)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--courses", type=int, default=200)
    ap.add_argument("--offerings", type=int, default=1000)
    ap.add_argument("--create-students", type=int, default=1000, help="the create scenario's pool")
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()
    per_student = -(-args.records // args.students)
    if per_student > args.offerings:
        sys.exit("more registrations per student than offerings")

    target = (Registrar if args.target == "registrar" else PocketBase)(args.url, args.auth)
    started = time.monotonic()
    target.setup()
    w = args.workers
    students = parallel(lambda i: target.create("contact", contact(i)), range(args.students), w)
    courses = parallel(lambda c: target.create("course", course(c)), range(args.courses), w)
    offering_bodies = [offering(o, courses[o % args.courses], args.courses) for o in range(args.offerings)]
    offerings = parallel(lambda b: target.create("offering", b), offering_bodies, w)
    offering_rows = [
        (courses[o % args.courses], offerings[o], offering_bodies[o]["start_date"]) for o in range(args.offerings)
    ]
    pool = parallel(
        lambda i: target.create("contact", contact(args.students + i)), range(args.create_students), w
    )
    # Registration i: student i % S, its (i // S)-th; a student's offerings are spread apart.
    step = max(1, args.offerings // per_student)

    def make(i):
        s, j = i % args.students, i // args.students
        row = offering_rows[(s + j * step) % args.offerings]
        return target.create("registration", registration(i, students[s], row, s, f"reg-{i}"))

    registrations = parallel(make, range(args.records), w)
    elapsed = time.monotonic() - started

    def write(name, rows):
        with open(f"{args.out}/{name}", "w") as f:
            for row in rows:
                f.write((row if isinstance(row, str) else "\t".join(map(str, row))) + "\n")

    write("auth", [args.auth])
    write("registrations.txt", registrations)
    write("students.txt", students)
    write("create_students.txt", pool)
    write("offerings.txt", [(o, c, target.date(d)) for c, o, d in offering_rows])
    searches = [(c, status) for c in courses for status in STATUSES]
    random.Random("searches").shuffle(searches)
    write("searches.txt", searches)
    # The create scenario's body: a seeded registration's shape, dated outside the search
    # window; load.lua fills in the student, the offering, its course and date, a counter.
    template = registration(0, "__STUDENT__", ("__COURSE__", "__OFFERING__", YEAR_START), 0, "create")
    template.update(
        date=datetime(2026, 1, 15, tzinfo=timezone.utc),
        course_date="__COURSE_DATE__",
        application_id="app-c__N__",
        event_registration_id="evt-c__N__",
    )
    del template["arrival_date"], template["departure_date"]
    write("create_template.json", [json.dumps(template, default=target.encode)])
    write("window.txt", [(target.date(SEARCH_FROM), target.date(SEARCH_TO))])
    total = args.students + args.courses + args.offerings + args.create_students + args.records
    print(f"seeded {args.target}: {total} records ({args.records} registrations) in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
