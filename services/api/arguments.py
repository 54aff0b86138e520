"""The payload rules of jobs and runs, shared by the API's Service and the client's
`defer`: a payload checked for its handler, its secret fields encrypted, and a manual
run's arguments made from a trigger's body (payload merged with the job's or replacing
it, idempotency key, priority), and a trigger as statements (`trigger_steps`). Calls
here may block (the SSRF check of an http payload resolves its host): async callers run
them in a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sundial.api import payloads
from sundial.api.errors import Conflict
from sundial.api.schemas import TriggerBody
from sundial.api.settings import ApiSettings
from sundial.core import jsonb
from sundial.core.enqueue import Blocking, RunArguments, Statement, Steps, enqueue_steps
from sundial.core.errors import ConfigError, InvalidInput, NotFound
from sundial.core.secrets import decrypt_fields, encrypt_fields, merge_secrets
from sundial.core.sql import q

DEFAULT_MAX_PAYLOAD_BYTES: int = ApiSettings.model_fields["api_max_payload_bytes"].default


@dataclass(frozen=True)
class PayloadRules:
    """The limits a payload is checked against and the key its secrets are encrypted
    with; `missing_key` says, in an error, where the key should have come from."""

    encryption_key: str | None
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    allowed_networks: tuple[Any, ...] = ()
    missing_key: str = "ENCRYPTION_KEY is not set on the API"

    @classmethod
    def of(cls, settings: ApiSettings) -> PayloadRules:
        return cls(settings.encryption_key, settings.api_max_payload_bytes,
                   tuple(settings.http_allowed_networks))

    def checked(self, handler: str, payload: dict[str, Any],
                stored_secret: Callable[[], dict[str, Any]]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the payload with its secret fields masked, those fields' values), after checking
        it for its handler. A "***" sent for a secret keeps the stored one (`stored_secret()`,
        read only when the payload has secret fields)."""
        payloads.validate(handler, payload, max_bytes=self.max_payload_bytes,
                          allowed_networks=self.allowed_networks)
        public, secret = payloads.split_secrets(handler, payload)
        if not secret:
            return public, {}
        return public, payloads.keep_masked(secret, stored_secret())

    def encrypted(self, secret: dict[str, Any]) -> str | None:
        if not secret:
            return None
        try:
            return encrypt_fields(self.encryption_key, secret)
        except ConfigError:
            raise InvalidInput("payload", "(secret fields)",
                               f"has secret fields but {self.missing_key}; set it (on the "
                               "workers too) or leave the secrets out") from None

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            return decrypt_fields(self.encryption_key, token)
        except ConfigError:
            raise Conflict(f"this job has secret fields and {self.missing_key}; set it to "
                           "change the payload") from None

    def stored_secrets(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The job's secret values: those in secret_payload, and any still kept in its
        plain payload (a row written by SQL or saved before the field was a secret), so
        that a payload sent back as shown, "***" and all, keeps them."""
        plain = row["payload"] if isinstance(row["payload"], dict) else {}
        stored = payloads.split_secrets(row["handler"], plain)[1]
        if row["secret_payload"]:
            stored = merge_secrets(stored, self.decrypt(row["secret_payload"]))
        return stored

    def trigger_arguments(self, job: Mapping[str, Any] | None, body: TriggerBody
                          ) -> tuple[RunArguments, dict[str, Any]]:
        """The arguments of a manual run of `job` (a get_job row; only read for a body with
        a payload) and its audit details."""
        if body.payload is None and "mode" in body.model_fields_set:
            raise InvalidInput("mode", body.mode, "applies to a payload; send `payload` too "
                               "(with replace, {} runs the handler with no arguments)")
        run = RunArguments(priority=body.priority, key=body.idempotency_key)
        if body.payload is not None:
            stored = job["payload"] if isinstance(job["payload"], dict) else {}
            payload = body.payload if body.mode == "replace" else {**stored, **body.payload}
            public, secret = self.checked(job["handler"], payload,
                                          lambda: self.stored_secrets(job))
            run.payload, run.secret_payload = public, self.encrypted(secret)
        details = {"mode": body.mode if body.payload is not None else None,
                   "idempotency_key": body.idempotency_key}
        return run, {k: v for k, v in details.items() if v is not None}


def trigger_steps(rules: PayloadRules, ref: str | int, job_id: int | None, body: TriggerBody,
                  actor: str, action: str, *, lease_s: float | None) -> Steps:
    """A manual run of job `ref` (an id, `job_id`, or a name) with the body's arguments,
    as statements (sundial.core.enqueue). The job's row is read first only when the body
    needs it (a payload merged with the job's and checked for its handler, an idempotency
    key looked up by job id); else the insert finds the job itself, in one statement."""
    # A name with NUL (or a lone surrogate) names no job: PostgreSQL cannot even compare it.
    if payloads.unstorable_text(str(ref)):
        raise NotFound(f"no job {ref!r}")
    if body.payload is None and body.idempotency_key is None:
        run, details = rules.trigger_arguments(None, body)
        return (yield from enqueue_steps(job_id, actor, action, details, run, lease_s=lease_s,
                                         job_name=str(ref)))
    row = yield Statement(q("get_job"), (job_id, str(ref)))
    if row is None:
        raise NotFound(f"no job {ref!r}")
    job = dict(row)
    if isinstance(job["payload"], str):  # a connection without Sundial's jsonb codec
        job["payload"] = jsonb.loads(job["payload"])
    run, details = yield Blocking(rules.trigger_arguments, (job, body))
    return (yield from enqueue_steps(job["id"], actor, action, details, run, lease_s=lease_s))
