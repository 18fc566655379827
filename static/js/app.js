/* keygate: small progressive enhancements. Every page works without this
 * file; it only adds the copy button and select-on-focus on the one-time
 * token page. Loaded with `defer`; no inline handlers (CSP: script-src 'self'). */
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

  function init() {
    document.querySelectorAll('button[data-copy-target]').forEach(enhanceCopyButton);
    document.querySelectorAll('input[data-select-on-focus], textarea[data-select-on-focus]').forEach(enhanceSelectOnFocus);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
