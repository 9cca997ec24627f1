"""The user's files over HTTP: upload (multipart), list, read, delete, and the bytes themselves."""

from django.http import FileResponse
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from core.api_fields import NulSafeMixin
from sessions_app import files, schema
from sessions_app.models import UserFile
from sessions_app.serializers import FileUploadSerializer, UserFileSerializer


@schema.user_files
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
            # The same answer as a refused file type: 415 {"detail", "code"}.
            raise files.UnsupportedFileType(
                "Send the file as multipart/form-data, in a field named `file`; "
                f"this request is {request.content_type or 'of no declared type'}."
            ) from None
        payload = FileUploadSerializer(data=data)
        payload.is_valid(raise_exception=True)
        row = files.upload_file(owner=request.user, uploaded=payload.validated_data["file"])
        return Response(UserFileSerializer(row).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        files.delete_file(file=instance)

    @schema.file_content
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
