"""Reason codes of the public decision contract that this layer raises.

Codes are stable: add new ones, never rename. Each maps to the human message shown with it.
"""

from __future__ import annotations

from types import MappingProxyType

ACTOR_NOT_PERMITTED = "ACTOR_NOT_PERMITTED"
ACTOR_UNKNOWN = "ACTOR_UNKNOWN"
ACTOR_INACTIVE = "ACTOR_INACTIVE"
PRESCRIBER_NOT_CERTIFIED = "PRESCRIBER_NOT_CERTIFIED"
PHARMACY_NOT_CERTIFIED = "PHARMACY_NOT_CERTIFIED"
PHARMACY_ACTIVATION_EXPIRED = "PHARMACY_ACTIVATION_EXPIRED"
DESIGNEE_GRANT_MISSING = "DESIGNEE_GRANT_MISSING"
DESIGNEE_GRANT_EXPIRED = "DESIGNEE_GRANT_EXPIRED"
DESIGNEE_GRANT_SCOPE = "DESIGNEE_GRANT_SCOPE"
OUT_OF_SCOPE = "OUT_OF_SCOPE"
CLOCK_OVERRIDE_NOT_ALLOWED = "CLOCK_OVERRIDE_NOT_ALLOWED"
# Callers of the HTTP service: their credential and the person they assert.
CREDENTIAL_MISSING = "CREDENTIAL_MISSING"
CREDENTIAL_INVALID = "CREDENTIAL_INVALID"
CREDENTIAL_EXPIRED = "CREDENTIAL_EXPIRED"
CREDENTIAL_REVOKED = "CREDENTIAL_REVOKED"
SCOPE_NOT_GRANTED = "SCOPE_NOT_GRANTED"
ACTING_PERSON_NOT_OF_CLIENT = "ACTING_PERSON_NOT_OF_CLIENT"

# The course gates (reason-codes.md), plus CONTRACEPTION_NOT_CONFIRMED,
# PRESCRIBER_CONFIRMATION_MISSING and SUPPLY_EXCEEDS_PRESCRIPTION.
NO_ACTIVE_COURSE = "NO_ACTIVE_COURSE"
COURSE_SUSPENDED = "COURSE_SUSPENDED"
CATEGORY_NOT_ASSIGNED = "CATEGORY_NOT_ASSIGNED"
INVALID_CATEGORY_REASON = "INVALID_CATEGORY_REASON"
CONSENT_NOT_SIGNED = "CONSENT_NOT_SIGNED"
COUNSELING_NOT_DOCUMENTED = "COUNSELING_NOT_DOCUMENTED"
COMPREHENSION_NOT_DONE = "COMPREHENSION_NOT_DONE"
CONTRACEPTION_NOT_DOCUMENTED = "CONTRACEPTION_NOT_DOCUMENTED"
CONTRACEPTION_NOT_CONFIRMED = "CONTRACEPTION_NOT_CONFIRMED"
CONTRACEPTION_INSUFFICIENT = "CONTRACEPTION_INSUFFICIENT"
NO_PRIMARY_METHOD = "NO_PRIMARY_METHOD"
CONTRACEPTION_LEAD_IN_NOT_MET = "CONTRACEPTION_LEAD_IN_NOT_MET"
CONTRACEPTION_MISMATCH = "CONTRACEPTION_MISMATCH"
PRETREATMENT_TESTS_INCOMPLETE = "PRETREATMENT_TESTS_INCOMPLETE"
PRETREATMENT_TEST_SPACING = "PRETREATMENT_TEST_SPACING"
NO_NEGATIVE_TEST_IN_WINDOW = "NO_NEGATIVE_TEST_IN_WINDOW"
PREGNANCY_TEST_POSITIVE = "PREGNANCY_TEST_POSITIVE"
TEST_SETTING_NOT_PERMITTED = "TEST_SETTING_NOT_PERMITTED"
TEST_SENSITIVITY_INSUFFICIENT = "TEST_SENSITIVITY_INSUFFICIENT"
TEST_TOO_OLD_FOR_RX = "TEST_TOO_OLD_FOR_RX"
SCHEDULED_TEST_MISSED = "SCHEDULED_TEST_MISSED"
PRESCRIBER_CONFIRMATION_MISSING = "PRESCRIBER_CONFIRMATION_MISSING"
LOCKOUT_19D = "LOCKOUT_19D"
WINDOW_EXPIRED = "WINDOW_EXPIRED"
RX_EXPIRED = "RX_EXPIRED"
SUPPLY_EXCEEDS_MAX = "SUPPLY_EXCEEDS_MAX"
SUPPLY_EXCEEDS_PRESCRIPTION = "SUPPLY_EXCEEDS_PRESCRIPTION"
REFILLS_NOT_ALLOWED = "REFILLS_NOT_ALLOWED"
AUTHORIZATION_ALREADY_ISSUED = "AUTHORIZATION_ALREADY_ISSUED"
AUTHORIZATION_NOT_FOUND = "AUTHORIZATION_NOT_FOUND"
AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"
AUTHORIZATION_REVERSED = "AUTHORIZATION_REVERSED"
PRESCRIPTION_SUPERSEDED = "PRESCRIPTION_SUPERSEDED"

# Flags: obligations and alerts for worklists.
RMA_REVERSAL_REQUIRED = "RMA_REVERSAL_REQUIRED"
OVERDUE_POST_TREATMENT_TEST = "OVERDUE_POST_TREATMENT_TEST"
PREGNANCY_ACTIONS = "PREGNANCY_ACTIONS"
TEST_DUE_SOON = "TEST_DUE_SOON"
WINDOW_CLOSING = "WINDOW_CLOSING"

MESSAGES: MappingProxyType[str, str] = MappingProxyType(
    {
        ACTOR_NOT_PERMITTED: "the acting person's role may not perform this action",
        ACTOR_UNKNOWN: "no person with this id is registered",
        ACTOR_INACTIVE: "the acting person is not active",
        PRESCRIBER_NOT_CERTIFIED: "the prescriber is not registered, not activated, or deactivated",
        PHARMACY_NOT_CERTIFIED: "the pharmacy is not registered, not activated, or deactivated",
        PHARMACY_ACTIVATION_EXPIRED: "the pharmacy's annual activation has expired",
        DESIGNEE_GRANT_MISSING: "the designee holds no grant from this prescriber",
        DESIGNEE_GRANT_EXPIRED: "the designee's grant from this prescriber expired or was revoked",
        DESIGNEE_GRANT_SCOPE: "the designee's grant does not cover this action",
        OUT_OF_SCOPE: "the acting person may act only for themselves here",
        CLOCK_OVERRIDE_NOT_ALLOWED: "a simulated clock (--now) is refused on this database: it is "
        "not a training database and no administrator enabled it",
        CREDENTIAL_MISSING: "no API key was presented (Authorization: Bearer <key>)",
        CREDENTIAL_INVALID: "the API key is not one this service issued",
        CREDENTIAL_EXPIRED: "the API key has expired: ask an administrator to rotate it",
        CREDENTIAL_REVOKED: "the API key or its client was revoked",
        SCOPE_NOT_GRANTED: "the API key's scopes do not include this action",
        ACTING_PERSON_NOT_OF_CLIENT: "the asserted person does not belong to the key's pharmacy "
        "or prescriber",
        NO_ACTIVE_COURSE: "no open treatment course (never enrolled, ended, completed, withdrawn)",
        COURSE_SUSPENDED: "the course is suspended: no prescribing or dispensing",
        CATEGORY_NOT_ASSIGNED: "the patient has no reproductive-potential category",
        INVALID_CATEGORY_REASON: "the reason given cannot support the category",
        CONSENT_NOT_SIGNED: "a required consent form is not signed",
        COUNSELING_NOT_DOCUMENTED: "required counselling is not documented",
        COMPREHENSION_NOT_DONE: "the patient's comprehension questions are not completed",
        CONTRACEPTION_NOT_DOCUMENTED: "no contraception (or abstinence) is documented",
        CONTRACEPTION_NOT_CONFIRMED: "the patient has not confirmed their methods this cycle",
        CONTRACEPTION_INSUFFICIENT: "fewer contraception methods than the programme requires",
        NO_PRIMARY_METHOD: "none of the methods is of the required (primary) tier",
        CONTRACEPTION_LEAD_IN_NOT_MET: "contraception started too recently",
        CONTRACEPTION_MISMATCH: "the patient's methods differ from the prescriber's",
        PRETREATMENT_TESTS_INCOMPLETE: "fewer than the required pre-treatment pregnancy tests",
        PRETREATMENT_TEST_SPACING: "pre-treatment pregnancy tests are too close together",
        NO_NEGATIVE_TEST_IN_WINDOW: "no negative pregnancy test whose window covers today",
        PREGNANCY_TEST_POSITIVE: "a positive pregnancy test is on file",
        TEST_SETTING_NOT_PERMITTED: "the test's setting is not allowed for this test",
        TEST_SENSITIVITY_INSUFFICIENT: "the test is less sensitive than the programme requires",
        TEST_TOO_OLD_FOR_RX: "the test was documented too long before the prescription",
        SCHEDULED_TEST_MISSED: "a test due under the testing schedule is not on file",
        PRESCRIBER_CONFIRMATION_MISSING: "the prescriber has not confirmed the patient for this "
        "month's result",
        LOCKOUT_19D: "the waiting period after a missed first window is still running",
        WINDOW_EXPIRED: "the prescription/dispense window has closed",
        RX_EXPIRED: "the prescription was presented after its validity",
        SUPPLY_EXCEEDS_MAX: "the days' supply exceeds the programme maximum",
        SUPPLY_EXCEEDS_PRESCRIPTION: "the days' supply dispensed exceeds the prescription's",
        REFILLS_NOT_ALLOWED: "the programme forbids refills",
        AUTHORIZATION_ALREADY_ISSUED: "an authorization already exists for this prescription/cycle",
        AUTHORIZATION_NOT_FOUND: "no such authorization",
        AUTHORIZATION_EXPIRED: "the authorization is past its do-not-dispense-after time",
        AUTHORIZATION_REVERSED: "the authorization was reversed",
        PRESCRIPTION_SUPERSEDED: "the prescription is not the course's current one",
        RMA_REVERSAL_REQUIRED: "an authorization was not picked up: reverse it, return to stock",
        OVERDUE_POST_TREATMENT_TEST: "the post-treatment pregnancy test is overdue",
        PREGNANCY_ACTIONS: "pregnancy reported: stop the drug, report to the registry, refer",
        TEST_DUE_SOON: "the next pregnancy test is due soon",
        WINDOW_CLOSING: "a window closes soon with no authorization yet",
    }
)
