"""Create users for load tests and simulations, with API tokens: `create_users --count 100 --prefix trader`.

Users are `<prefix>1` ... `<prefix><count>`; existing ones are kept as they are (their tokens reused), so
running it again is harmless. Prints (or writes to --tokens-file) one `username,token` line each.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create <prefix>1..<prefix>N with API tokens (existing users kept); print username,token lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="how many users")
        parser.add_argument("--prefix", default="trader", help="username prefix (default: trader)")
        parser.add_argument("--password", default=None,
                            help="password for new users (hashed once for all); default: none (tokens only)")
        parser.add_argument("--tokens-file", type=Path, default=None,
                            help="write username,token lines here instead of to stdout")

    def handle(self, *args: object, count: int, prefix: str, password: str | None, tokens_file: Path | None,
               **options: object) -> None:
        if count < 1:
            raise CommandError("--count must be at least 1")
        users = get_user_model()
        names = [f"{prefix}{n}" for n in range(1, count + 1)]
        username = users._meta.get_field(users.USERNAME_FIELD)
        max_length = username.max_length if isinstance(username, models.Field) else None
        if max_length is not None and len(names[-1]) > max_length:
            raise CommandError(f"usernames longer than {max_length} characters")
        with transaction.atomic():
            existing = set(users.objects.filter(**{f"{users.USERNAME_FIELD}__in": names})
                           .values_list(users.USERNAME_FIELD, flat=True))
            hashed = make_password(password)  # None: an unusable password
            new = [users(**{users.USERNAME_FIELD: name}, password=hashed)
                   for name in names if name not in existing]
            users.objects.bulk_create(new, batch_size=500)
            by_name = dict(users.objects.filter(**{f"{users.USERNAME_FIELD}__in": names})
                           .values_list(users.USERNAME_FIELD, "pk"))
            have = set(Token.objects.filter(user_id__in=by_name.values()).values_list("user_id", flat=True))
            Token.objects.bulk_create([Token(user_id=pk, key=Token.generate_key())
                                       for pk in by_name.values() if pk not in have], batch_size=500)
            keys = dict(Token.objects.filter(user_id__in=by_name.values()).values_list("user_id", "key"))
        lines = [f"{name},{keys[by_name[name]]}" for name in names]
        if tokens_file is None:
            self.stdout.write("\n".join(lines))
        else:
            tokens_file.write_text("\n".join(lines) + "\n")
            self.stderr.write(f"{len(new)} created, {len(existing)} existed; tokens in {tokens_file}")
