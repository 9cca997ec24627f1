"""The `file_read` tool: one of the user's own files by id, a bounded slice of its text."""

from sessions_app.files import files_for_user, read_file_text
from sessions_app.tools import Tool, ToolContext, ToolError, register

READ_MAX_CHARS = 8000


def file_read(context: ToolContext, arguments: dict) -> str:
    file_id, offset = arguments["file_id"], arguments.get("offset", 0)
    # Only the caller's files are looked in: another user's file and a missing one read the same.
    row = files_for_user(user=context.user).filter(pk=file_id).first()
    if row is None:
        raise ToolError(f"No file with id {file_id} among your files.")
    part = read_file_text(file=row, start=offset, max_chars=READ_MAX_CHARS)
    end = part.start + len(part.text)
    header = (
        f'File #{row.pk} "{row.name}" ({row.content_type}, {row.size} bytes), '
        f"characters {part.start}-{end} of {part.total_chars}:"
    )
    more = (
        f"\n[{part.total_chars - end} more characters: call file_read again with offset={end}]"
        if end < part.total_chars
        else ""
    )
    return f"{header}\n{part.text}{more}"


register(
    Tool(
        name="file_read",
        description=(
            "Read one of the user's uploaded files by its id (as found by `search`). Returns at most "
            f"{READ_MAX_CHARS} characters from `offset`; call again with a larger offset to read on."
        ),
        parameters={
            "type": "object",
            "properties": {
                "file_id": {"type": "integer", "minimum": 1, "description": "The file's id."},
                "offset": {"type": "integer", "minimum": 0, "description": "The first character to read."},
            },
            "required": ["file_id"],
            "additionalProperties": False,
        },
        function=file_read,
    )
)
