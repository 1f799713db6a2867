from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from contexts.infra.metrics import metrics_view


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico on every page that names none (the admin, error pages)."""

    permanent = True

    def get_redirect_url(self, *args, **kwargs) -> str:
        return static("contexts/favicon.svg")


urlpatterns = [
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("contexts.api.urls")),
    path("", include("contexts.web.urls")),
]

# Under /api/ Django's own errors answer the API's JSON error shape; elsewhere the HTML pages.
handler400 = "contexts.api.errors.bad_request"
handler403 = "contexts.api.errors.permission_denied"
handler404 = "contexts.api.errors.page_not_found"
handler500 = "contexts.api.errors.server_error"
