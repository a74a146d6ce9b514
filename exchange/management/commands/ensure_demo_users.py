"""Create the local demo logins if missing; scripts/run.sh calls this on every start."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from exchange.marketmaker import accounts

# (username, password, superuser): known passwords, so only ever created with DEBUG on.
DEMO_ACCOUNTS = (("demo", "demo", False), ("admin", "admin", True))


class Command(BaseCommand):
    help = ("Create the demo user demo/demo and the superuser admin/admin (DEBUG only), and the market "
            "maker's user with its position limits (always); existing users and limits are kept.")

    def handle(self, *args: object, **options: object) -> None:
        if settings.DEBUG:
            self.create_demo_logins()
        else:
            self.stdout.write("DEBUG is off: no demo logins with well-known passwords (create an admin with "
                              "`manage.py createsuperuser`).")
        # Before the server starts, so the overrides are part of the matcher's start-up configuration
        # (risk.config.worker_config); its cash is deposited by the market maker itself (it needs the
        # matcher): exchange/marketmaker/accounts.py.
        maker = accounts.ensure_user()
        created = accounts.ensure_limits(maker, send=False)
        limits = f"; position limits added for {', '.join(created)}" if created else ""
        self.stdout.write(f"Market maker user: {maker.get_username()} (no password){limits}")

    def create_demo_logins(self) -> None:
        users = get_user_model().objects
        for username, password, superuser in DEMO_ACCOUNTS:
            user, created = users.get_or_create(
                username=username, defaults={"is_staff": superuser, "is_superuser": superuser}
            )
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            role = "superuser" if superuser else "user"
            if user.check_password(password):
                self.stdout.write(f"Demo {role}: {username} / {password}")
            else:
                self.stdout.write(f"Demo {role} {username} exists with another password; left unchanged.")
