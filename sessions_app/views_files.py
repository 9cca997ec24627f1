"""The user's files over HTTP: upload (multipart), list, read, delete, and the bytes themselves."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from sessions_app import files
from sessions_app.api_errors import file_refusal_to_http
from sessions_app.models import UserFile
from sessions_app.serializers import FileUploadSerializer, UserFileSerializer
from sessions_app.views import NulSafeMixin

_ERROR = inline_serializer("FileNotFound", fields={"detail": serializers.CharField()})
_REFUSED = inline_serializer(
    "FileRefused", fields={"detail": serializers.CharField(), "code": serializers.CharField()}
)
_FILE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The file's id.")


@extend_schema_view(
    list=extend_schema(summary="List your files", description="Newest first."),
    create=extend_schema(
        summary="Upload a text file",
        description=(
            "Multipart, field `file`. Text types only (text/*, application/json), else 415; over "
            "FILE_MAX_BYTES 413; past your FILE_QUOTA_BYTES 413 with code `quota_exceeded`."
        ),
        request={
            "multipart/form-data": OpenApiRequest(
                FileUploadSerializer, encoding={"file": {"contentType": files.TEXT_TYPES_DECLARED}}
            )
        },
        responses={
            201: UserFileSerializer,
            400: OpenApiResponse(description="No `file` field."),
            413: OpenApiResponse(_REFUSED, description="Too large, or over your quota (`quota_exceeded`)."),
            415: OpenApiResponse(_REFUSED, description="Not a text file, or not a multipart upload."),
        },
    ),
    retrieve=extend_schema(
        summary="Read one of your files' details",
        parameters=[_FILE_ID],
        responses={200: UserFileSerializer, 404: _ERROR},
    ),
    destroy=extend_schema(
        summary="Delete one of your files", parameters=[_FILE_ID], responses={204: None, 404: _ERROR}
    ),
)
class UserFileViewSet(
    NulSafeMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = UserFileSerializer
    lookup_value_regex = "[0-9]+"
    permission_classes = [IsAuthenticated]
    http_method_names = ["get", "post", "delete", "head", "options"]
    filter_backends = []

    def get_parsers(self):
        # The project parses JSON only; an upload is multipart (core.middleware lets its size through).
        if self.request is not None and self.request.method == "POST":
            return [MultiPartParser()]
        return super().get_parsers()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return UserFile.objects.none()
        return files.files_for_user(user=self.request.user)

    def get_object(self):
        if int(self.kwargs[self.lookup_field]) > 2**63 - 1:  # names no file (and would overflow bigint)
            self.kwargs[self.lookup_field] = "0"
        return super().get_object()

    def create(self, request, *args, **kwargs):
        try:
            data = request.data
        except UnsupportedMediaType:
            # The same body as a refused file type: {"detail", "code"}.
            raise file_refusal_to_http(
                files.UnsupportedFileType(
                    "Send the file as multipart/form-data, in a field named `file`; "
                    f"this request is {request.content_type or 'of no declared type'}."
                )
            ) from None
        payload = FileUploadSerializer(data=data)
        payload.is_valid(raise_exception=True)
        try:
            row = files.upload_file(owner=request.user, uploaded=payload.validated_data["file"])
        except files.FileRefused as refusal:
            raise file_refusal_to_http(refusal) from None
        return Response(UserFileSerializer(row).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        files.delete_file(file=instance)

    @extend_schema(
        summary="Download one of your files",
        parameters=[_FILE_ID],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
            404: _ERROR,
        },
    )
    @action(detail=True, methods=["get"], url_path="content")
    def content(self, request, *args, **kwargs):
        row = self.get_object()
        response = FileResponse(
            row.file.open("rb"), content_type=row.content_type, as_attachment=True, filename=row.name
        )
        # A user's text/html must never run as a page of this origin: no sniffing, no scripts.
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
        return response
