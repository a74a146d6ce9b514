from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from exchange.api import account_views, batch_views, market_views, order_views, performance_views, views

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("token", views.TokenView.as_view(), name="api-token"),
    path("ping", views.PingView.as_view(), name="api-ping"),
    path("submit", views.SubmitView.as_view(), name="api-submit"),
    path("cancel/<int:order_id>", views.CancelView.as_view(), name="api-cancel"),
    path("orders", order_views.OrderListView.as_view(), name="api-orders"),
    path("orders/open", order_views.OrderCancelAllView.as_view(), name="api-orders-open"),
    path("orders/<int:order_id>", order_views.OrderDetailView.as_view(), name="api-order"),
    path("orders/client/<str:symbol>/<str:client_order_id>", order_views.OrderByClientIdView.as_view(),
         name="api-order-by-client-id"),
    path("instruments", views.InstrumentListView.as_view(), name="api-instruments"),
    path("ticker/<str:symbol>", views.TickerView.as_view(), name="api-ticker"),
    path("fills", order_views.FillListView.as_view(), name="api-fills"),
    path("book/<str:symbol>", views.BookView.as_view(), name="api-book"),
    path("trades/<str:symbol>", views.TradesView.as_view(), name="api-trades"),
    path("candles/<str:symbol>", market_views.CandlesView.as_view(), name="api-candles"),
    path("account", account_views.AccountView.as_view(), name="api-account"),
    path("user/<int:user_id>/positions", account_views.UserPositionsView.as_view(),
         name="api-user-positions"),
    path("orders/batch", batch_views.BatchSubmitView.as_view(), name="api-orders-batch"),
    path("performance/system", performance_views.SystemPerformanceView.as_view(),
         name="api-performance-system"),
    # anything else under /api/ (a negative id, an unknown path): the API's JSON 404, not Django's page
    re_path(r"^", views.not_found, name="api-not-found"),
]
