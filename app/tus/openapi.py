"""The tus routes in the OpenAPI document: tus speaks in headers, which Litestar cannot see in the
handlers (they read them raw, to answer tus's own statuses), so each route's operation class lists
its request headers, raw body and answers (with their headers) here."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)

from app.tus.schemas import CHECKSUM_ALGORITHMS, OFFSET_TYPE, TUS_VERSION

_TEXT = Schema(type=OpenAPIType.STRING)
_BYTES = Schema(type=OpenAPIType.STRING, pattern=r"^[0-9]{1,19}$")
_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    required=["status_code", "detail"],
    properties={"status_code": Schema(type=OpenAPIType.INTEGER), "detail": _TEXT},
)

WHY = {
    400: "A header cannot be read (the detail names it and what to send)",
    401: "No API key, or not a valid one: send 'Authorization: Bearer <key>'",
    403: "A final (concatenated) upload takes no PATCH",
    404: "No such upload for this key's owner (or not an upload URL), or it was terminated",
    409: "Upload-Offset is not the upload's offset, another PATCH is writing, or the upload is complete",
    410: "The upload expired or was refused; start a new one",
    412: "Tus-Resumable is missing or not 1.0.0 (Tus-Version says what is)",
    413: "Upload-Length (or the bytes sent) is past Tus-Max-Size",
    415: "The body is not application/offset+octet-stream, or the file's first bytes are not a type Sluice accepts",
    422: "Upload-Length is 0",
    460: "Upload-Checksum does not match the bytes that arrived; none of them count",
    503: "The object store is unavailable: retry after Retry-After seconds",
}


def _header(name: str, description: str, schema: Schema = _TEXT, *, required: bool = False) -> Parameter:
    return Parameter(name=name, param_in="header", schema=schema, description=description, required=required)


VERSION = _header(
    "Tus-Resumable", "The tus version the client speaks; another one answers 412", Schema(type=OpenAPIType.STRING, enum=[TUS_VERSION]), required=True
)
CHECKSUM = _header(
    "Upload-Checksum",
    f"'<algorithm> <base64 digest>' of this request's body; algorithm one of {', '.join(CHECKSUM_ALGORITHMS)}",
)
CREATION = [
    VERSION,
    _header("Upload-Length", "The file's length in bytes (or send Upload-Defer-Length)", _BYTES),
    _header("Upload-Defer-Length", "1: the length comes with a later PATCH", Schema(type=OpenAPIType.STRING, enum=["1"])),
    _header(
        "Upload-Metadata",
        "Comma-separated 'key base64value' pairs: filename, filetype (a media type), process (true/false)",
    ),
    _header("Upload-Concat", "'partial', or 'final;<partial upload URLs separated by spaces>' (no Upload-Length)"),
    CHECKSUM,
]
PATCHING = [
    VERSION,
    _header("Upload-Offset", "The offset HEAD answered: where these bytes go", _BYTES, required=True),
    _header("Upload-Length", "The length of an upload created with Upload-Defer-Length", _BYTES),
    CHECKSUM,
]
METHOD_OVERRIDE = _header(
    "X-HTTP-Method-Override",
    "PATCH, DELETE or HEAD: the method this POST stands for",
    Schema(type=OpenAPIType.STRING, enum=["PATCH", "DELETE", "HEAD"]),
    required=True,
)
BODY = RequestBody(
    description="The upload's bytes from Upload-Offset on (any number of them; the offset moves by what is stored)",
    required=False,
    content={OFFSET_TYPE: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))},
)


def _answer_header(description: str, *, required: bool = False) -> OpenAPIHeader:
    return OpenAPIHeader(schema=_TEXT, description=description, required=required)


RESUMABLE = _answer_header("1.0.0", required=True)
OFFSET = _answer_header("Bytes durably stored (absent while a final upload waits for its partial uploads)")
STATE = {
    "Tus-Resumable": RESUMABLE,
    "Upload-Length": _answer_header("The upload's length, once known"),
    "Upload-Defer-Length": _answer_header("1 while the length is not declared yet"),
    "Upload-Expires": _answer_header("When an unfinished upload expires (RFC 7231 date)"),
    "Upload-Concat": _answer_header("partial, or final;<partial upload URLs>"),
    "Sluice-File-Id": _answer_header("The file record, once the last byte arrived"),
}


def _answers(success: dict[int, OpenAPIResponse], codes: tuple[int, ...], *, body: bool = True) -> dict[str, OpenAPIResponse]:
    """``success`` plus the error answers ``codes`` (JSON bodies, except for HEAD, which has none)."""
    answers = {str(status): response for status, response in success.items()}
    for code in codes:
        content = {"application/json": OpenAPIMediaType(schema=_ERROR)} if body else None
        headers = {"Tus-Version": _answer_header(TUS_VERSION, required=True)} if code == 412 else None
        answers[str(code)] = OpenAPIResponse(description=WHY[code], content=content, headers=headers)
    return answers


CREATED = OpenAPIResponse(
    description="Created; the upload is at Location (with creation-with-upload, Upload-Offset says what was stored)",
    headers={"Location": _answer_header("The upload's URL", required=True), "Upload-Offset": OFFSET} | STATE,
)
HEAD_STATE = OpenAPIResponse(
    description="The upload's state, in headers",
    headers={"Upload-Offset": OFFSET, "Upload-Metadata": _answer_header("As sent on creation"), "Cache-Control": _answer_header("no-store", required=True)}
    | STATE,
)
PATCHED = OpenAPIResponse(
    description="Stored; the last PATCH also carries Sluice-File-Id and Sluice-Job-Id",
    headers={"Upload-Offset": _answer_header("The new offset", required=True), "Sluice-Job-Id": _answer_header("The processing job")}
    | STATE,
)
TERMINATED = OpenAPIResponse(description="Terminated; its storage is released", headers={"Tus-Resumable": RESUMABLE})
PATCH_ERRORS = (400, 401, 403, 404, 409, 410, 412, 413, 415, 460, 503)


@dataclass
class AnnounceOperation(Operation):
    def __post_init__(self) -> None:
        self.responses = _answers({}, (400, 404)) | {
            "204": OpenAPIResponse(
                description="What this server supports",
                headers={
                    "Tus-Version": _answer_header(TUS_VERSION, required=True),
                    "Tus-Extension": _answer_header("The tus extensions served", required=True),
                    "Tus-Max-Size": _answer_header("The largest upload in bytes", required=True),
                    "Tus-Checksum-Algorithm": _answer_header(",".join(CHECKSUM_ALGORITHMS), required=True),
                },
            )
        }


@dataclass
class CreateOperation(Operation):
    def __post_init__(self) -> None:
        self.parameters = CREATION
        self.request_body = BODY
        self.responses = _answers({201: CREATED}, (400, 401, 409, 412, 413, 415, 422, 460, 503))


@dataclass
class HeadOperation(Operation):
    def __post_init__(self) -> None:
        self.parameters = [*(self.parameters or []), VERSION]
        self.responses = _answers({200: HEAD_STATE}, (400, 401, 404, 410, 412), body=False)


@dataclass
class PatchOperation(Operation):
    def __post_init__(self) -> None:
        self.parameters = [*(self.parameters or []), *PATCHING]
        self.request_body = BODY
        self.responses = _answers({204: PATCHED}, PATCH_ERRORS)


@dataclass
class TerminateOperation(Operation):
    def __post_init__(self) -> None:
        self.parameters = [*(self.parameters or []), VERSION]
        self.responses = _answers({204: TERMINATED}, (400, 401, 404, 409, 412, 503))


@dataclass
class OverrideOperation(Operation):
    def __post_init__(self) -> None:
        offset = _header("Upload-Offset", "With PATCH: the offset HEAD answered", _BYTES)
        self.parameters = [*(self.parameters or []), VERSION, METHOD_OVERRIDE, offset, *PATCHING[2:]]
        self.request_body = BODY
        head = OpenAPIResponse(description="As HEAD (X-HTTP-Method-Override: HEAD)", headers=HEAD_STATE.headers)
        done = OpenAPIResponse(
            description="As PATCH (with Upload-Offset) or DELETE (X-HTTP-Method-Override: PATCH or DELETE)",
            headers={"Upload-Offset": _answer_header("The new offset, after a PATCH")} | STATE,
        )
        self.responses = _answers({200: head, 204: done}, PATCH_ERRORS)
