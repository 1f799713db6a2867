// Staff pages: keyboard shortcut for search and the plan editor's add / remove / reorder buttons.
// Loaded from our own static files (no inline scripts, so a strict Content-Security-Policy works).
(function () {
  "use strict";

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
})();
