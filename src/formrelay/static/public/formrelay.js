/*! formrelay.js: send a form to formrelay with fetch, show the answer inline.
 * No dependencies, no build step. Without JavaScript the form posts as it always did.
 * <script src="https://FORMRELAY/formrelay.js" defer></script> on the form's page; every
 * form whose action is this formrelay's /f/<key> (or that has data-formrelay) is taken over.
 * Opt a form out with data-formrelay-off; set the success text with data-formrelay-success.
 */
(function () {
  "use strict";
  // Signed by the server when it sent this script: when the page was loaded.
  var PAGE_LOAD = "__FORMRELAY_PAGE_LOAD__";
  var TRIES = 3;
  var FIRST_DELAY_MS = 1000; // then 2000: backoff between tries
  var script = document.currentScript;
  var origin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  var counter = 0;

  function ours(form) {
    if (form.hasAttribute("data-formrelay-off")) { return false; }
    if (form.hasAttribute("data-formrelay")) { return true; }
    var action;
    try { action = new URL(form.getAttribute("action") || "", location.href); } catch (e) { return false; }
    return action.origin === origin && /\/f\/[^/]+\/?$/.test(action.pathname);
  }

  function attach(form) {
    if (form.formrelay || !ours(form)) { return; }
    form.formrelay = true;
    var stamp = form.querySelector('input[name="_formrelay"]');
    if (!stamp) {
      stamp = document.createElement("input");
      stamp.type = "hidden";
      stamp.name = "_formrelay";
      form.appendChild(stamp);
    }
    stamp.value = PAGE_LOAD;
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) { return; }
      event.preventDefault();
      send(form, event.submitter);
    });
  }

  function statusBox(form) {
    var box = form.querySelector("[data-formrelay-status]");
    if (!box) {
      box = document.createElement("div");
      box.setAttribute("data-formrelay-status", "");
      box.className = "formrelay-status";
      form.appendChild(box);
    }
    return box;
  }

  function say(form, text, kind) {
    var box = statusBox(form);
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.setAttribute("data-state", kind);
    box.textContent = text;
  }

  function clearErrors(form) {
    form.querySelectorAll(".formrelay-error").forEach(function (node) { node.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (field) {
      field.removeAttribute("aria-invalid");
      var ids = (field.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
        return id && id.indexOf("formrelay-error-") !== 0;
      });
      if (ids.length) { field.setAttribute("aria-describedby", ids.join(" ")); }
      else { field.removeAttribute("aria-describedby"); }
    });
  }

  function fieldsNamed(form, name) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name === name && el.type !== "hidden";
    });
  }

  function showErrors(form, body, status) {
    var errors = (body && body.errors) || [];
    var general = [];
    var first = null;
    errors.forEach(function (error) {
      var fields = error.field ? fieldsNamed(form, error.field) : [];
      if (!fields.length) { general.push(error.message); return; }
      var note = document.createElement("p");
      note.className = "formrelay-error";
      note.id = "formrelay-error-" + (++counter);
      note.textContent = error.message;
      fields.forEach(function (field) {
        field.setAttribute("aria-invalid", "true");
        var described = field.getAttribute("aria-describedby");
        field.setAttribute("aria-describedby", (described ? described + " " : "") + note.id);
      });
      var last = fields[fields.length - 1];
      last.insertAdjacentElement("afterend", note);
      first = first || fields[0];
    });
    if (general.length || !first) {
      say(form, general.join(" ") || (body && body.error) ||
          "The form could not be sent (" + status + ").", "error");
    } else {
      say(form, errors.length > 1 ? "Please correct the fields marked." : "Please correct the field marked.", "error");
    }
    if (first) { first.focus(); }
  }

  function busy(form, on) {
    form.querySelectorAll('button, input[type="submit"]').forEach(function (button) {
      button.disabled = on;
    });
    if (on) { form.setAttribute("aria-busy", "true"); } else { form.removeAttribute("aria-busy"); }
  }

  function send(form, submitter) {
    clearErrors(form);
    var data = new FormData(form);
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    busy(form, true);
    say(form, "Sending…", "pending");
    attempt(form, data, 1);
  }

  function later(form, data, tries) {
    var delay = FIRST_DELAY_MS * Math.pow(2, tries - 1);
    say(form, "Could not reach the server; trying again…", "pending");
    setTimeout(function () { attempt(form, data, tries + 1); }, delay);
  }

  function attempt(form, data, tries) {
    fetch(form.action, {
      method: "POST",
      body: data,
      headers: { Accept: "application/json" },
      credentials: "omit"
    }).then(function (response) {
      if (response.status === 503 && tries < TRIES) { return later(form, data, tries); }
      return response.json().catch(function () { return null; }).then(function (body) {
        finish(form, response.status, body);
      });
    }, function () {
      if (tries < TRIES) { return later(form, data, tries); }
      busy(form, false);
      say(form, "The form could not be sent: check your connection, then try again.", "error");
      form.dispatchEvent(new CustomEvent("formrelay:error", { detail: { status: 0 } }));
    });
  }

  function finish(form, status, body) {
    busy(form, false);
    if (body && body.ok) {
      form.dispatchEvent(new CustomEvent("formrelay:success", { detail: body }));
      if (form.querySelector('input[name="_next"]') && body.next) {
        location.assign(body.next);
        return;
      }
      form.reset();
      say(form, form.getAttribute("data-formrelay-success") || "Thank you: your message was sent.", "success");
      return;
    }
    showErrors(form, body, status);
    form.dispatchEvent(new CustomEvent("formrelay:error", { detail: { status: status, body: body } }));
  }

  function attachAll() { document.querySelectorAll("form").forEach(attach); }
  window.formrelay = { attach: attach };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", attachAll); }
  else { attachAll(); }
})();
