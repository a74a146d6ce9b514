from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from exchange import views
from exchange.api import authentication, metrics_views

# the admin's login refuses past the failed-login budget with a message, as /accounts/login/ does
admin.site.login_form = authentication.AdminLoginForm

handler400 = "exchange.error_views.bad_request"
handler403 = "exchange.error_views.permission_denied"
handler404 = "exchange.error_views.page_not_found"
handler500 = "exchange.error_views.server_error"

urlpatterns = [
    path("", views.home, name="home"),  # the markets
    path("markets/rows", views.market_rows, name="market-rows"),  # the markets table, polled by its page
    path("trade/<str:symbol>/", views.trade, name="trade"),  # the trading screen
    path("system/", views.system, name="system"),  # staff: the live system figures as charts
    path("health", views.health, name="health"),
    # what browsers ask for on pages that name no icon (admin, the browsable API, Swagger)
    path("favicon.ico", views.favicon),
    path("metrics", metrics_views.PrometheusView.as_view(), name="metrics"),  # Prometheus, staff only
    path("accounts/login/", authentication.LoginView.as_view(), name="login"),  # 429 past failed logins
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("admin/", admin.site.urls),
    path("api/", include("exchange.api.urls")),
]
