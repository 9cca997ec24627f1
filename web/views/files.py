"""The files page: the user's uploads (sessions_app.files, as the files API), upload and delete."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from sessions_app import files
from web.forms import UploadForm

FILES_PER_PAGE = 50


@login_required
def file_list(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            row = files.upload_file(owner=request.user, uploaded=form.cleaned_data["file"])
        except files.FileRefused as exc:
            form.add_error("file", exc.message)
        else:
            messages.success(request, f"Uploaded {row.name}.")
            return redirect("web:files")
    page = Paginator(files.files_for_user(user=request.user), FILES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(request, "web/files.html", {"form": form, "page": page, "nav": "files"})


@require_POST
@login_required
def file_delete(request, pk: int):
    # Another user's file is not found, as on the API.
    row = get_object_or_404(files.files_for_user(user=request.user), pk=pk)
    files.delete_file(file=row)
    messages.success(request, f"Deleted {row.name}.")
    return redirect("web:files")
