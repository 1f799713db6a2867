"""Routes of the staff pages."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.session_list, name="sessions"),
    path("handoffs/", views.handoff_queue, name="handoffs"),
    path("handoffs/badge/", views.handoff_badge, name="handoff_badge"),
    path("projects/switch/", views.project_switch, name="project_switch"),
    path("sessions/<str:session_id>/", views.session_detail, name="session_detail"),
    path("sessions/<str:session_id>/live/", views.session_live, name="session_live"),
    path("sessions/<str:session_id>/edit/", views.session_edit, name="session_edit"),
    path("sessions/<str:session_id>/revert/", views.session_revert, name="session_revert"),
    path("sessions/<str:session_id>/reset/", views.session_reset, name="session_reset"),
    path("sessions/<str:session_id>/take/", views.handoff_take, name="handoff_take"),
    path("sessions/<str:session_id>/take-over/", views.handoff_take_over, name="handoff_take_over"),
    path("sessions/<str:session_id>/reply/", views.handoff_reply, name="handoff_reply"),
    path("sessions/<str:session_id>/note/", views.handoff_note, name="handoff_note"),
    path("sessions/<str:session_id>/release/", views.handoff_release, name="handoff_release"),
    path("sessions/<str:session_id>/close/", views.session_close, name="session_close"),
    path("sessions/<str:session_id>/locks/", views.session_locks, name="session_locks"),
    path("sessions/<str:session_id>/proposals/accept/", views.proposal_accept, name="proposal_accept"),
    path("sessions/<str:session_id>/proposals/dismiss/", views.proposal_dismiss, name="proposal_dismiss"),
]
