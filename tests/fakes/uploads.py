"""The CSV import's vendor: uploaded files kept in memory instead of S3.

While started, ``connectors.uploads.open_body`` reads from here (the CSV stream opens
the upload twice a run: once to count, once to read) and ``max_page_size`` replaces the
stream's 500 rows a page, so a few dozen rows make many pages. Controls, like the HTTP
fakes': ``seed`` rows in bulk (a file has no update times: a row is its content), ``put``
a whole file, ``change`` a row (a re-upload of the file with that row edited), and the
log of opened uploads (``opened``)."""
from __future__ import annotations

import io
from typing import Any

UPLOAD_ID = "upl_01J0CONF0RMANCE000000000A"
HEADER = ["Id", "E-mail", "First name", "Last name"]
MAPPING = {"Id": "external_id", "E-mail": "email", "First name": "name.given", "Last name": "name.family"}


class FakeUploads:
    def __init__(self, *, max_page_size: int | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.rows: dict[str, list[list[str]]] = {}  # upload id -> data rows (seeded ones)
        self.opened: list[str] = []
        self.max_page_size = max_page_size
        self._saved: dict[str, Any] = {}

    def start(self) -> FakeUploads:
        from connectors import csvfile, uploads

        self._saved = {"open_body": uploads.open_body, "PAGE_ROWS": csvfile.PAGE_ROWS}
        uploads.open_body = self.open_body  # type: ignore[assignment]
        if self.max_page_size:
            csvfile.PAGE_ROWS = self.max_page_size
        return self

    def stop(self) -> None:
        from connectors import csvfile, uploads

        if self._saved:
            uploads.open_body = self._saved["open_body"]  # type: ignore[assignment]
            csvfile.PAGE_ROWS = self._saved["PAGE_ROWS"]
            self._saved = {}

    def __enter__(self) -> FakeUploads:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open_body(self, tenant_id: str, connection_id: str, upload_id: str) -> Any:
        """``connectors.uploads.open_body``: the file, or LookupError when none was put."""
        self.opened.append(upload_id)
        if upload_id not in self.files:
            raise LookupError(upload_id)
        return io.BytesIO(self.files[upload_id])

    def put(self, upload_id: str, data: bytes) -> None:
        self.files[upload_id] = data

    def seed(self, count: int, upload_id: str = UPLOAD_ID) -> list[str]:
        """Append ``count`` customers (columns :data:`HEADER`, config :data:`MAPPING`) to the
        upload; returns their external ids."""
        rows = self.rows.setdefault(upload_id, [])
        ids = []
        for _ in range(count):
            n = len(rows) + 1
            rows.append([f"row-{n:05d}", f"csv.{n}@example.com", "Seed", f"N{n}"])
            ids.append(rows[-1][0])
        self._write(upload_id)
        return ids

    def change(self, external_id: str, upload_id: str = UPLOAD_ID, **cells: str) -> None:
        """Edit a row (by its Id) and upload the file again: ``change("row-00003", **{"First name": "Ana"})``."""
        for row in self.rows[upload_id]:
            if row[0] == external_id:
                for column, value in cells.items():
                    row[HEADER.index(column)] = value
        self._write(upload_id)

    def _write(self, upload_id: str) -> None:
        lines = [",".join(HEADER)] + [",".join(r) for r in self.rows[upload_id]]
        self.files[upload_id] = ("\n".join(lines) + "\n").encode()
