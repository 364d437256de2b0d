// Small enhancements for the referral form. The form works completely
// without this script; the server decides everything (and a repeated submit
// never stores a second referral, with or without it).
(function () {
  'use strict';

  // After an invalid submit, move focus to the error summary so that keyboard
  // and screen-reader users start from the list of problems.
  var summary = document.querySelector('.error-summary');
  if (summary) summary.focus();

  // A link in the summary moves focus into its field, not just scrolls to it.
  document.querySelectorAll('.error-summary a[href^="#"]').forEach(function (link) {
    link.addEventListener('click', function (event) {
      var target = document.getElementById(link.getAttribute('href').slice(1));
      if (!target) return;
      event.preventDefault();
      target.focus();
      var field = target.closest('.field, .section') || target;
      field.scrollIntoView({ block: 'start' });
    });
  });

  // While a submission is on its way, say so and ignore further presses.
  var form = document.getElementById('referral-form');
  if (form) {
    var button = form.querySelector('button[type="submit"]');
    var label = button ? button.textContent : '';
    var sending = false;
    form.addEventListener('submit', function (event) {
      if (sending) {
        event.preventDefault();
        return;
      }
      sending = true;
      if (button) {
        button.setAttribute('aria-disabled', 'true');
        button.textContent = 'Sending…';
      }
    });
    // Coming back to this page (the back button) makes it usable again; the
    // server recognises a resubmission of the same form and stores nothing new.
    window.addEventListener('pageshow', function () {
      sending = false;
      if (button) {
        button.removeAttribute('aria-disabled');
        button.textContent = label;
      }
    });
  }
})();
