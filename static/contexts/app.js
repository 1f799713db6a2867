// Staff pages: keyboard shortcut for search, the plan editor's add / remove / reorder buttons, and the desk's
// waiting count (tab title, opt-in desktop notification).
// Loaded from our own static files (no inline scripts, so a strict Content-Security-Policy works).
(function () {
  "use strict";

  // The server shows times in the zone this cookie names (ViewerTimeZoneMiddleware); the login page sets it, so
  // the first page after signing in already uses it.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var current = document.cookie.match(/(?:^|; )tz=([^;]*)/);
    // Zone names are cookie-safe as they are (the server does not percent-decode cookies).
    if (zone && /^[A-Za-z0-9_\/+-]+$/.test(zone) && (!current || current[1] !== zone)) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax" +
        (window.location.protocol === "https:" ? "; secure" : "");
    }
  } catch (e) { /* no Intl time zone: times stay in UTC, named as such */ }

  function isTyping(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    var search = document.querySelector("[data-search-shortcut]");
    if (search) {
      event.preventDefault();
      search.focus();
      search.select();
    }
  });

  var added = 0;

  function relabel(list) {
    list.querySelectorAll(".plan-row").forEach(function (row, i) {
      var text = row.querySelector("[name=step_text]");
      var done = row.querySelector("[name=step_done]");
      if (text) text.setAttribute("aria-label", "Step " + (i + 1));
      if (done) done.setAttribute("aria-label", "Step " + (i + 1) + " done");
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-move], [data-remove], [data-add-step]");
    if (!button) return;
    var form = button.closest("form");
    var list = form && form.querySelector("[data-plan-rows]");
    if (!list) return;
    event.preventDefault();

    if (button.hasAttribute("data-add-step")) {
      var template = form.querySelector("#plan-row-template");
      var row = template.content.firstElementChild.cloneNode(true);
      var id = "n" + Date.now().toString(36) + "-" + (++added);
      row.querySelector("[name=step_id]").value = id;
      row.querySelector("[name=step_done]").value = id;
      list.appendChild(row);
      relabel(list);
      row.querySelector("[name=step_text]").focus();
      return;
    }

    var current = button.closest(".plan-row");
    if (button.hasAttribute("data-remove")) {
      var next = current.nextElementSibling || current.previousElementSibling;
      current.remove();
      relabel(list);
      var focusTarget = next && next.querySelector("[name=step_text]");
      if (focusTarget) focusTarget.focus();
      return;
    }
    if (button.dataset.move === "up" && current.previousElementSibling) {
      list.insertBefore(current, current.previousElementSibling);
    } else if (button.dataset.move === "down" && current.nextElementSibling) {
      list.insertBefore(current.nextElementSibling, current);
    }
    relabel(list);
    button.focus();
  });

  // A form marked data-reset-after-success (the staff note) lives outside the region it updates: empty it once
  // the server took it. A refusal (4xx, also swapped) keeps the text.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.matches && form.matches("form[data-reset-after-success]") && event.detail.xhr &&
        event.detail.xhr.status >= 200 && event.detail.xhr.status < 300) {
      form.reset();
    }
  });

  // The transcript opens at the newest message. When the live check or a reply re-renders it, it stays at the
  // newest if it was there, and otherwise where the person had scrolled to (reading older messages).
  var transcriptState = null;

  function transcriptList() {
    return document.querySelector("[data-transcript]");
  }

  function rememberTranscript() {
    var list = transcriptList();
    transcriptState = list ? {list: list, top: list.scrollTop,
      atEnd: list.scrollTop + list.clientHeight >= list.scrollHeight - 40} : null;
  }

  function restoreTranscript() {
    var list = transcriptList();
    // afterSettle fires for each settled element: act once, when the list was replaced.
    if (!list || !transcriptState || transcriptState.list === list) return;
    list.scrollTop = transcriptState.atEnd ? list.scrollHeight : transcriptState.top;
    transcriptState = null;
  }

  // The live check re-renders the regions whose data changed, and some hold small forms (restore a version, reset,
  // locks) that must post the version now shown. A form the person opened there stays open, with what they typed
  // or ticked and the focus: the same form (same action, same version to restore) in the new region gets them.
  // A region whose new version no longer has a form someone is typing in (the reply box once another person took
  // the conversation over) stays as it is: sending then meets the refusal, which says why and keeps the text.
  // A refused action (someone changed the session first: 409) re-renders the same regions with the state that won,
  // and its forms keep what was typed the same way, so a reset or restore can be sent again without retyping.
  var liveSwap = false;
  var refusedSwap = false;
  var liveFocus = null;

  function formKey(form) {
    var to = form.querySelector("[name=to_version]");
    return form.getAttribute("action") + "|" + (to ? to.value : "");
  }

  function changedFields(form) {
    var fields = [];
    form.querySelectorAll("textarea, input[type=text], input[type=checkbox]").forEach(function (field) {
      var box = field.type === "checkbox";
      if (box ? field.checked === field.defaultChecked : field.value === field.defaultValue) return;
      fields.push({name: field.name, value: field.value, box: box, checked: field.checked,
        focused: field === document.activeElement, start: field.selectionStart, end: field.selectionEnd});
    });
    return fields;
  }

  function carryOver(oldForm, newForm) {
    var details = oldForm.closest("details");
    var newDetails = newForm.closest("details");
    if (details && details.open && newDetails) newDetails.open = true;
    changedFields(oldForm).forEach(function (kept) {
      newForm.querySelectorAll("[name='" + kept.name + "']").forEach(function (field) {
        if (kept.box) {
          if (field.value === kept.value) field.checked = kept.checked;
          return;
        }
        field.value = kept.value;
        if (kept.focused) liveFocus = {field: field, start: kept.start, end: kept.end};
      });
    });
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    liveSwap = !!(config && config.elt && config.elt.id === "live");
    refusedSwap = !liveSwap && !!event.detail.xhr && event.detail.xhr.status >= 400;
  });

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (!(liveSwap || refusedSwap) || !event.detail.fragment) return;
    var fresh = {};
    event.detail.fragment.querySelectorAll("form[action]").forEach(function (form) { fresh[formKey(form)] = form; });
    var forms = event.detail.target.querySelectorAll("form[action]");
    var stranded = liveSwap && Array.prototype.some.call(forms, function (form) {
      return !fresh[formKey(form)] && changedFields(form).some(function (field) { return !field.box; });
    });
    if (stranded) {
      event.detail.shouldSwap = false;
      return;
    }
    forms.forEach(function (form) {
      var newForm = fresh[formKey(form)];
      if (newForm) carryOver(form, newForm);
    });
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!liveFocus) return;
    var kept = liveFocus;
    liveFocus = null;
    if (!document.body.contains(kept.field)) return;
    kept.field.focus({preventScroll: true});
    try { kept.field.setSelectionRange(kept.start, kept.end); } catch (e) { /* not a text field */ }
  });

  // An action that replaced the control with the focus (Save and Cancel swap the edit form they sit in, Take and
  // Hand back the buttons) would leave the keyboard at the start of the page: it goes to the nearest region (element
  // with an id) around that control that is still there, onto its [autofocus] or first control.
  var focusRegions = null;

  document.addEventListener("htmx:beforeSwap", function (event) {
    focusRegions = [];
    var main = document.getElementById("main");
    for (var el = document.activeElement; el && el !== main && el !== document.body; el = el.parentElement) {
      if (el.id) focusRegions.push(el.id);
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!focusRegions) return;
    var ids = focusRegions;
    focusRegions = null;
    if (document.activeElement && document.activeElement !== document.body) return;
    for (var i = 0; i < ids.length; i++) {
      var region = document.getElementById(ids[i]);
      var control = region && region.querySelector(
        "[autofocus], a[href], button, textarea, input:not([type=hidden]), select");
      if (control) {
        control.focus();
        return;
      }
    }
  });

  document.addEventListener("htmx:beforeSwap", rememberTranscript);
  document.addEventListener("htmx:afterSettle", restoreTranscript);
  var openedList = transcriptList();
  if (openedList) openedList.scrollTop = openedList.scrollHeight;

  // The waiting count: the menu badge (refreshed by htmx) is the one source; the tab title and the optional
  // desktop notification follow it.
  var NOTIFY_KEY = "sessionctx.notify";
  var lastWaiting = null;

  function notifyWanted() {
    try {
      return window.localStorage.getItem(NOTIFY_KEY) === "on" && "Notification" in window &&
        Notification.permission === "granted";
    } catch (e) {
      return false;  // storage refused (private mode): no notifications
    }
  }

  function showNotifyState(button) {
    button.textContent = "Desktop alerts: " + (notifyWanted() ? "on" : "off");
    button.setAttribute("aria-pressed", notifyWanted() ? "true" : "false");
  }

  function syncWaiting() {
    var badge = document.getElementById("waiting-badge");
    if (!badge) return;
    var count = parseInt(badge.getAttribute("data-waiting"), 10) || 0;
    var title = document.title.replace(/^\(\d+\) /, "");
    document.title = count ? "(" + count + ") " + title : title;
    if (lastWaiting !== null && count > lastWaiting && notifyWanted()) {
      var note = new Notification(count === 1 ? "1 conversation waits for a person" :
        count + " conversations wait for a person", {tag: "sessionctx-waiting", body: "Open the handoff queue."});
      var queue = badge.closest("a");
      note.onclick = function () {
        window.focus();
        if (queue) window.location.href = queue.href;
      };
    }
    lastWaiting = count;
  }

  document.addEventListener("htmx:afterSettle", syncWaiting);
  syncWaiting();

  var toggle = document.querySelector("[data-notify-toggle]");
  if (toggle && "Notification" in window) {
    toggle.hidden = false;
    showNotifyState(toggle);
    toggle.addEventListener("click", function () {
      if (notifyWanted()) {
        window.localStorage.setItem(NOTIFY_KEY, "off");
        showNotifyState(toggle);
        return;
      }
      Notification.requestPermission().then(function (permission) {
        try {
          window.localStorage.setItem(NOTIFY_KEY, permission === "granted" ? "on" : "off");
        } catch (e) { /* storage refused: stays off */ }
        showNotifyState(toggle);
      });
    });
  }
})();
