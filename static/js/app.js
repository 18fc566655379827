/* keygate: small progressive enhancements. Every page works without this
 * file; it only adds the copy button and select-on-focus on the one-time
 * token page, the expiry preview, and Escape to close a menu. Loaded with
 * `defer`; no inline handlers (CSP: script-src 'self'). */
(function () {
  'use strict';

  var COPIED_MS = 2000;

  /** Copies by selecting the field and running the legacy copy command. */
  function legacyCopy(field) {
    try {
      if (typeof field.select === 'function') {
        field.focus();
        field.select();
        if (typeof field.setSelectionRange === 'function') {
          field.setSelectionRange(0, field.value.length);
        }
      } else {
        var range = document.createRange();
        range.selectNodeContents(field);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      return document.execCommand('copy') === true;
    } catch (err) {
      return false;
    }
  }

  /** Resolves to true when the field's text reached the clipboard. */
  async function copyField(field) {
    var text = 'value' in field ? field.value : field.textContent;
    if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function') {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (err) {
        /* Permission denied or not allowed here: try the fallback. */
      }
    }
    return legacyCopy(field);
  }

  function findStatus(button) {
    var scope = button.closest('section, form, .card');
    return (scope && scope.querySelector('[data-copy-status]')) ||
      document.querySelector('[data-copy-status]');
  }

  function setStatus(status, message, isError) {
    if (!status) return;
    status.classList.toggle('copy-error', isError);
    status.textContent = message;
  }

  function enhanceCopyButton(button) {
    var targetId = button.getAttribute('data-copy-target');
    var field = targetId && document.getElementById(targetId);
    if (!field) return;

    var label = button.textContent;
    var timer = null;
    button.hidden = false;

    button.addEventListener('click', async function () {
      var status = findStatus(button);
      var ok = await copyField(field);
      if (timer !== null) window.clearTimeout(timer);

      if (ok) {
        button.textContent = 'Copied';
        button.classList.add('copied');
        setStatus(status, 'Copied to the clipboard.', false);
        timer = window.setTimeout(function () {
          button.textContent = label;
          button.classList.remove('copied');
          timer = null;
        }, COPIED_MS);
      } else {
        button.textContent = label;
        button.classList.remove('copied');
        if (typeof field.select === 'function') {
          field.focus();
          field.select();
        }
        setStatus(status, 'Could not copy automatically. The token is selected: press Ctrl+C (\u2318C on a Mac) to copy it.', true);
      }
    });
  }

  function enhanceSelectOnFocus(field) {
    var selectAll = function () {
      if (typeof field.select === 'function') field.select();
    };
    field.addEventListener('focus', selectAll);
    field.addEventListener('click', selectAll);
  }

  /** The first field with a problem gets the focus, as the page loads. */
  function focusFirstError(form) {
    var bad = form.querySelector('[aria-invalid="true"], fieldset.invalid input');
    if (bad && typeof bad.focus === 'function') bad.focus();
  }

  var DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  var MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function dayWords(d) {
    return DAYS[d.getUTCDay()] + ', ' + MONTHS[d.getUTCMonth()] + ' ' + d.getUTCDate() + ' ' + d.getUTCFullYear();
  }

  /** The expiry select: the date field only for "On a date", a preview
   * line of the day it ends, and a warning for a personal token that never
   * expires. The server renders the same on every form it shows. */
  function enhanceExpiry(form) {
    var select = form.querySelector('[data-expiry-select]');
    var date = form.querySelector('[data-expiry-date]');
    var preview = form.querySelector('[data-expiry-preview]');
    var warning = form.querySelector('[data-never-warning]');
    if (!select) return;
    function update() {
      var value = select.value;
      if (date) date.disabled = value !== 'custom';
      if (preview) {
        if (value === 'never') {
          preview.textContent = 'This token will never expire.';
        } else if (value === 'custom') {
          var picked = date && date.value ? new Date(date.value + 'T00:00:00Z') : null;
          preview.textContent = picked && !isNaN(picked)
            ? 'This token will expire at the end of ' + dayWords(picked) + ' (UTC).'
            : 'Pick the day the token expires.';
        } else {
          var days = parseInt(value, 10);
          if (!isNaN(days)) {
            var now = new Date();
            var end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + days));
            preview.textContent = 'This token will expire on ' + dayWords(end) + ' (UTC).';
          }
        }
      }
      if (warning) {
        var personal = form.querySelector('input[name="kind"][value="personal"]');
        warning.hidden = !(personal && personal.checked && value === 'never');
      }
    }
    select.addEventListener('change', update);
    if (date) date.addEventListener('change', update);
    form.querySelectorAll('input[name="kind"]').forEach(function (r) { r.addEventListener('change', update); });
    update();
  }

  /** Log filters start folded on a phone and open on a desktop. */
  function openOnDesktop(details) {
    if (window.matchMedia && window.matchMedia('(min-width: 52rem)').matches) details.open = true;
  }

  /** A show-once page never comes back from the back-forward cache with
   * its secret: the secret leaves the page as the page is left, and a
   * restored page asks the server again (which says it was shown). */
  window.addEventListener('pagehide', function () {
    document.querySelectorAll('[data-secret]').forEach(function (el) {
      if ('value' in el) el.value = '';
      el.textContent = '';
    });
  });
  window.addEventListener('pageshow', function (event) {
    if (event.persisted && document.querySelector('[data-show-once]')) window.location.reload();
  });

  /** Escape closes an open actions menu (a `<details class="menu">`) and,
   * when the focus was in it, gives the focus back to its button, as a
   * native menu does. */
  function closeMenuOnEscape(event) {
    if (event.key !== 'Escape' && event.key !== 'Esc') return;
    var focused = event.target && event.target.closest ? event.target.closest('details.menu[open]') : null;
    var open = document.querySelectorAll('details.menu[open]');
    if (!open.length) return;
    open.forEach(function (menu) { menu.open = false; });
    if (focused) {
      var summary = focused.querySelector('summary');
      if (summary) summary.focus();
    }
    event.preventDefault();
  }

  function init() {
    document.addEventListener('keydown', closeMenuOnEscape);
    document.querySelectorAll('form[data-focus-first-error]').forEach(focusFirstError);
    document.querySelectorAll('form').forEach(enhanceExpiry);
    document.querySelectorAll('details[data-open-on-desktop]').forEach(openOnDesktop);
    document.querySelectorAll('button[data-copy-target]').forEach(enhanceCopyButton);
    document.querySelectorAll('input[data-select-on-focus], textarea[data-select-on-focus]').forEach(enhanceSelectOnFocus);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
