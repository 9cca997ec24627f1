"""The project's user model: Django's user, ours from the first migration so it can grow."""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    class Meta:
        db_table = "accounts_user"
