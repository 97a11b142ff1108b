"""Translate the gateway pages and choose the language for a request.

German is the fallback when neither the browser nor the tenant names a supported
language. Every language table has the same keys as the German one, which
tests/unit/test_i18n.py checks. Texts with a placeholder are filled in with
str.format: `error_too_long` takes `max` (a number of characters) and
`request_too_large_message` takes `limit` (a size such as "64 KB") and
`already_sent_message` takes `reference`.

French texts put a no-break space (U+00A0) before : ? ! and ; as standard French
typography does, so a line never starts with that mark.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final

LANGUAGES: tuple[str, ...] = ("de", "en", "fr", "it")
DEFAULT_LANGUAGE = "de"

# A basic language range (RFC 4647), the form that Accept-Language uses.
_LANGUAGE_RANGE: Final = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*")
# RFC 9110 limits a qvalue to three decimals and to the range 0 to 1.
_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

_GERMAN: Final[dict[str, str]] = {
    "site_name": "Helpdesk",
    "form_title": "Problem melden",
    "form_intro": (
        "Beschreiben Sie das Problem möglichst genau. "
        "So kann es schneller bearbeitet werden."
    ),
    "label_organisation": "Organisation",
    "label_reporter": "Gemeldet von",
    "label_personnel_number": "Personalnummer",
    "label_category": "Kategorie",
    "category_placeholder": "Bitte wählen",
    "label_subject": "Betreff",
    "label_description": "Beschreibung",
    "hint_description": (
        "Was ist passiert? Was haben Sie erwartet? Erschien eine Fehlermeldung?"
    ),
    "label_location": "Ort",
    "hint_location": "Zum Beispiel Gebäude, Stockwerk oder Raum.",
    "label_optional": "optional",
    "label_urgency": "Dringlichkeit",
    "urgency_low": "Niedrig",
    "urgency_normal": "Normal",
    "urgency_high": "Hoch",
    "submit": "Absenden",
    "error_summary": "Bitte prüfen Sie die markierten Felder.",
    "error_required": "Bitte füllen Sie dieses Feld aus.",
    "error_too_long": "Bitte kürzen Sie den Text auf höchstens {max} Zeichen.",
    "error_unknown_category": "Bitte wählen Sie eine Kategorie aus der Liste.",
    "error_invalid_choice": "Bitte wählen Sie einen Wert aus der Liste.",
    "error_invalid_encoding": (
        "Dieses Feld enthält Zeichen, die nicht gelesen werden konnten "
        "(kein gültiges UTF-8). Bitte geben Sie den Text neu ein."
    ),
    "error_control_character": (
        "Dieses Feld enthält unsichtbare Steuerzeichen. "
        "Bitte geben Sie den Text neu ein."
    ),
    "banner_unavailable": (
        "Der Dienst ist vorübergehend nicht verfügbar. Ihre Eingaben sind "
        "erhalten geblieben. Bitte versuchen Sie es in einem Moment erneut."
    ),
    "banner_expired": (
        "Dieses Formular war abgelaufen. Ihre Eingaben sind erhalten geblieben. "
        "Bitte prüfen Sie sie und senden Sie das Formular erneut ab."
    ),
    "confirmation_title": "Ticket erhalten",
    "confirmation_heading": "Vielen Dank, Ihr Ticket ist eingegangen.",
    "confirmation_reference_label": "Ihre Referenz:",
    "confirmation_hint": (
        "Bitte geben Sie diese Referenz an, wenn Sie sich beim Helpdesk melden."
    ),
    "request_too_large_title": "Eingabe zu groß",
    "request_too_large_message": (
        "Die gesendeten Daten sind größer als das Maximum von {limit}. "
        "Gehen Sie zurück, kürzen Sie den Text und senden Sie das Formular erneut."
    ),
    "too_many_fields_message": (
        "Das Formular enthält mehr als {max} Felder. "
        "Öffnen Sie den Link bitte erneut über Ihr Intranet."
    ),
    "bad_request_title": "Ungültige Anfrage",
    "bad_request_message": (
        "Das Formular konnte nicht gelesen werden. "
        "Öffnen Sie den Link bitte erneut über Ihr Intranet."
    ),
    "unsupported_media_type_title": "Format nicht unterstützt",
    "unsupported_media_type_message": (
        "Das Formular wurde in einem Format gesendet, das nicht unterstützt wird. "
        "Öffnen Sie den Link bitte erneut über Ihr Intranet und senden Sie das "
        "Formular von dort ab."
    ),
    "hint_fixed_value": "Dieser Wert ist durch Ihren Link vorgegeben.",
    "banner_rate_limited": (
        "Von Ihnen oder Ihrer Organisation sind in kurzer Zeit sehr viele Tickets "
        "eingegangen. Ihre Eingaben sind erhalten geblieben. Bitte senden Sie das "
        "Formular später erneut ab."
    ),
    "forbidden_title": "Anfrage abgelehnt",
    "forbidden_message": (
        "Das Formular wurde nicht von dieser Seite aus gesendet und deshalb nicht "
        "angenommen. Öffnen Sie den Link bitte erneut über Ihr Intranet."
    ),
    "already_sent_title": "Formular bereits gesendet",
    "already_sent_message": (
        "Dieses Formular wurde bereits mit anderem Inhalt gesendet und als Ticket "
        "{reference} gespeichert. Um ein weiteres Problem zu melden, öffnen Sie den "
        "Link bitte erneut über Ihr Intranet."
    ),
}

_ENGLISH: Final[dict[str, str]] = {
    "site_name": "Help desk",
    "form_title": "Report an issue",
    "form_intro": (
        "Describe the issue as precisely as you can, so that it can be dealt with "
        "quickly."
    ),
    "label_organisation": "Organisation",
    "label_reporter": "Reported by",
    "label_personnel_number": "Personnel number",
    "label_category": "Category",
    "category_placeholder": "Please choose",
    "label_subject": "Subject",
    "label_description": "Description",
    "hint_description": (
        "What happened? What did you expect? Was there an error message?"
    ),
    "label_location": "Location",
    "hint_location": "For example building, floor or room.",
    "label_optional": "optional",
    "label_urgency": "Urgency",
    "urgency_low": "Low",
    "urgency_normal": "Normal",
    "urgency_high": "High",
    "submit": "Send",
    "error_summary": "Please check the marked fields.",
    "error_required": "Please fill in this field.",
    "error_too_long": "Please shorten the text to at most {max} characters.",
    "error_unknown_category": "Please choose a category from the list.",
    "error_invalid_choice": "Please choose a value from the list.",
    "error_invalid_encoding": (
        "This field contains characters that could not be read "
        "(not valid UTF-8). Please retype it."
    ),
    "error_control_character": (
        "This field contains invisible control characters. Please retype it."
    ),
    "banner_unavailable": (
        "The service is temporarily unavailable. Your input has been kept; "
        "please try again in a moment."
    ),
    "banner_expired": (
        "This form had expired. Your input has been kept; "
        "please check it and submit the form again."
    ),
    "confirmation_title": "Ticket received",
    "confirmation_heading": "Thank you, your ticket has been received.",
    "confirmation_reference_label": "Your reference:",
    "confirmation_hint": ("Please quote this reference if you contact the help desk."),
    "request_too_large_title": "Request too large",
    "request_too_large_message": (
        "The data you sent is larger than the maximum of {limit}. "
        "Go back, shorten the text and send the form again."
    ),
    "too_many_fields_message": (
        "The form contains more than {max} fields. "
        "Open the link from your intranet again."
    ),
    "bad_request_title": "Invalid request",
    "bad_request_message": (
        "The form could not be read. Please open the link from your intranet again."
    ),
    "unsupported_media_type_title": "Unsupported format",
    "unsupported_media_type_message": (
        "The form was sent in a format that is not supported. Please open the "
        "link from your intranet again and send the form from there."
    ),
    "hint_fixed_value": "This value is set by your link.",
    "banner_rate_limited": (
        "Very many tickets have arrived from you or your organisation in a short time. "
        "What you typed has been kept. Please submit the form again later."
    ),
    "forbidden_title": "Request rejected",
    "forbidden_message": (
        "The form was not sent from this site, so it was not accepted. Please open the "
        "link again from your intranet."
    ),
    "already_sent_title": "Form already sent",
    "already_sent_message": (
        "This form was already sent with different content and stored as ticket "
        "{reference}. To report another issue, please open the link again from your "
        "intranet."
    ),
}

_FRENCH: Final[dict[str, str]] = {
    "site_name": "Service d'assistance",
    "form_title": "Signaler un problème",
    "form_intro": (
        "Décrivez le problème aussi précisément que possible afin qu'il puisse "
        "être traité rapidement."
    ),
    "label_organisation": "Organisation",
    "label_reporter": "Signalé par",
    "label_personnel_number": "Numéro de personnel",
    "label_category": "Catégorie",
    "category_placeholder": "Veuillez choisir",
    "label_subject": "Objet",
    "label_description": "Description",
    "hint_description": (
        "Que s'est-il passé\u00a0? À quoi vous attendiez-vous\u00a0? "
        "Un message d'erreur s'est-il affiché\u00a0?"
    ),
    "label_location": "Lieu",
    "hint_location": "Par exemple le bâtiment, l'étage ou la salle.",
    "label_optional": "facultatif",
    "label_urgency": "Urgence",
    "urgency_low": "Faible",
    "urgency_normal": "Normale",
    "urgency_high": "Élevée",
    "submit": "Envoyer",
    "error_summary": "Veuillez vérifier les champs signalés.",
    "error_required": "Veuillez remplir ce champ.",
    "error_too_long": "Veuillez raccourcir le texte à {max} caractères au maximum.",
    "error_unknown_category": "Veuillez choisir une catégorie dans la liste.",
    "error_invalid_choice": "Veuillez choisir une valeur dans la liste.",
    "error_invalid_encoding": (
        "Ce champ contient des caractères qui n'ont pas pu être lus "
        "(UTF-8 non valide). Veuillez le saisir à nouveau."
    ),
    "error_control_character": (
        "Ce champ contient des caractères de contrôle invisibles. "
        "Veuillez le saisir à nouveau."
    ),
    "banner_unavailable": (
        "Le service est momentanément indisponible. Vos saisies ont été "
        "conservées\u00a0; veuillez réessayer dans un instant."
    ),
    "banner_expired": (
        "Ce formulaire avait expiré. Vos saisies ont été conservées. "
        "Veuillez les vérifier et envoyer à nouveau le formulaire."
    ),
    "confirmation_title": "Ticket reçu",
    "confirmation_heading": "Merci, nous avons bien reçu votre ticket.",
    "confirmation_reference_label": "Votre référence\u00a0:",
    "confirmation_hint": (
        "Veuillez indiquer cette référence si vous contactez le service d'assistance."
    ),
    "request_too_large_title": "Données trop volumineuses",
    "request_too_large_message": (
        "Les données envoyées dépassent la taille maximale de {limit}. Revenez "
        "en arrière, raccourcissez le texte et renvoyez le formulaire."
    ),
    "too_many_fields_message": (
        "Le formulaire contient plus de {max} champs. "
        "Veuillez rouvrir le lien depuis votre intranet."
    ),
    "bad_request_title": "Requête non valide",
    "bad_request_message": (
        "Le formulaire n'a pas pu être lu. "
        "Veuillez rouvrir le lien depuis votre intranet."
    ),
    "unsupported_media_type_title": "Format non pris en charge",
    "unsupported_media_type_message": (
        "Le formulaire a été envoyé dans un format qui n'est pas pris en charge. "
        "Veuillez rouvrir le lien depuis votre intranet et envoyer le formulaire "
        "depuis cette page."
    ),
    "hint_fixed_value": "Cette valeur est fixée par votre lien.",
    "banner_rate_limited": (
        "Nous avons reçu de très nombreux tickets de votre part ou de votre "
        "organisation en peu de temps. Vos saisies ont été conservées. Veuillez "
        "renvoyer le formulaire plus tard."
    ),
    "forbidden_title": "Requête refusée",
    "forbidden_message": (
        "Le formulaire n'a pas été envoyé depuis ce site et n'a donc pas été accepté. "
        "Veuillez rouvrir le lien depuis votre intranet."
    ),
    "already_sent_title": "Formulaire déjà envoyé",
    "already_sent_message": (
        "Ce formulaire a déjà été envoyé avec un autre contenu et enregistré comme "
        "ticket {reference}. Pour signaler un autre problème, veuillez rouvrir le lien "
        "depuis votre intranet."
    ),
}

# The Italian texts address the reader with the formal "Lei", like "Sie" in German
# and "vous" in French.
_ITALIAN: Final[dict[str, str]] = {
    "site_name": "Servizio di assistenza",
    "form_title": "Segnalare un problema",
    "form_intro": (
        "Descriva il problema nel modo più preciso possibile, affinché possa "
        "essere trattato rapidamente."
    ),
    "label_organisation": "Organizzazione",
    "label_reporter": "Segnalato da",
    "label_personnel_number": "Numero del personale",
    "label_category": "Categoria",
    "category_placeholder": "Selezionare",
    "label_subject": "Oggetto",
    "label_description": "Descrizione",
    "hint_description": (
        "Che cosa è successo? Che cosa si aspettava? È apparso un messaggio di errore?"
    ),
    "label_location": "Luogo",
    "hint_location": "Ad esempio l'edificio, il piano o il locale.",
    "label_optional": "facoltativo",
    "label_urgency": "Urgenza",
    "urgency_low": "Bassa",
    "urgency_normal": "Normale",
    "urgency_high": "Alta",
    "submit": "Invia",
    "error_summary": "Controlli i campi evidenziati.",
    "error_required": "Compili questo campo.",
    "error_too_long": "Accorci il testo a {max} caratteri al massimo.",
    "error_unknown_category": "Scelga una categoria dall'elenco.",
    "error_invalid_choice": "Scelga un valore dall'elenco.",
    "error_invalid_encoding": (
        "Questo campo contiene caratteri che non è stato possibile leggere "
        "(UTF-8 non valido). Reinserisca il testo."
    ),
    "error_control_character": (
        "Questo campo contiene caratteri di controllo invisibili. Reinserisca il testo."
    ),
    "banner_unavailable": (
        "Il servizio è temporaneamente non disponibile. I dati inseriti sono "
        "stati conservati. Riprovi tra qualche istante."
    ),
    "banner_expired": (
        "Questo modulo era scaduto. I dati inseriti sono stati conservati. "
        "La preghiamo di verificarli e di inviare di nuovo il modulo."
    ),
    "confirmation_title": "Ticket ricevuto",
    "confirmation_heading": "Grazie, abbiamo ricevuto il suo ticket.",
    "confirmation_reference_label": "Il suo riferimento:",
    "confirmation_hint": (
        "Indichi questo riferimento se contatta il servizio di assistenza."
    ),
    "request_too_large_title": "Dati troppo voluminosi",
    "request_too_large_message": (
        "I dati inviati superano la dimensione massima di {limit}. Torni "
        "indietro, accorci il testo e invii di nuovo il modulo."
    ),
    "too_many_fields_message": (
        "Il modulo contiene più di {max} campi. Riapra il link dall'intranet."
    ),
    "bad_request_title": "Richiesta non valida",
    "bad_request_message": (
        "Non è stato possibile leggere il modulo. Riapra il link dall'intranet."
    ),
    "unsupported_media_type_title": "Formato non supportato",
    "unsupported_media_type_message": (
        "Il modulo è stato inviato in un formato non supportato. Riapra il link "
        "dall'intranet e invii il modulo da lì."
    ),
    "hint_fixed_value": "Questo valore è fissato dal suo link.",
    "banner_rate_limited": (
        "Abbiamo ricevuto moltissimi ticket da lei o dalla sua organizzazione in poco "
        "tempo. I dati inseriti sono stati conservati. Invii di nuovo il modulo più "
        "tardi."
    ),
    "forbidden_title": "Richiesta respinta",
    "forbidden_message": (
        "Il modulo non è stato inviato da questo sito e quindi non è stato accettato. "
        "Riapra il link dall'intranet."
    ),
    "already_sent_title": "Modulo già inviato",
    "already_sent_message": (
        "Questo modulo è già stato inviato con un altro contenuto e salvato come "
        "ticket {reference}. Per segnalare un altro problema, riapra il link "
        "dall'intranet."
    ),
}

# Read-only views, so that a caller cannot change the texts of later requests.
_TEXTS: Final[Mapping[str, Mapping[str, str]]] = {
    "de": MappingProxyType(_GERMAN),
    "en": MappingProxyType(_ENGLISH),
    "fr": MappingProxyType(_FRENCH),
    "it": MappingProxyType(_ITALIAN),
}


MAX_LANGUAGE_RANGES = 32
"""Language ranges of an `Accept-Language` header that are read. Browsers
send a handful."""

MAX_REMEMBERED_HEADER = 256
"""Longest `Accept-Language` value whose choice is remembered. Browsers send
a few dozen characters. Longer values are negotiated every time, so that a
client cannot fill the memory with large headers."""


def negotiate(accept_language: str | None, tenant_default: str | None) -> str:
    """Choose the page language for a request.

    Header entries are ordered by q-value and then by position, and the first one
    whose primary subtag is in LANGUAGES wins, so "fr-CH" selects "fr". Entries
    with q=0 and malformed entries are skipped without raising. Without a match
    the tenant's default is used if it is in LANGUAGES, else German.
    """
    if accept_language is not None and len(accept_language) > MAX_REMEMBERED_HEADER:
        return _negotiate(accept_language, tenant_default)
    return _remembered_negotiate(accept_language, tenant_default)


def _negotiate(accept_language: str | None, tenant_default: str | None) -> str:
    for language in _preferred_languages(accept_language or ""):
        if language in LANGUAGES:
            return language
    if tenant_default is not None and tenant_default in LANGUAGES:
        return tenant_default
    return DEFAULT_LANGUAGE


# Every opened link and posted form negotiates, mostly with the same few
# headers, and parsing one took a few microseconds.
_remembered_negotiate = functools.lru_cache(maxsize=1024)(_negotiate)


def texts(language: str) -> Mapping[str, str]:
    """Return the page texts for a language, or the German texts if it is unknown."""
    return _TEXTS.get(language, _TEXTS[DEFAULT_LANGUAGE])


def _preferred_languages(header: str) -> Iterator[str]:
    """Yield the lowercase primary subtags of the header, most preferred first.

    The wildcard "*" is skipped because it states no particular language.
    Only the first `MAX_LANGUAGE_RANGES` ranges count, so that a header of
    many kilobytes takes microseconds to read, not milliseconds.
    """
    weighted: list[tuple[float, int, str]] = []
    parts = header.split(",", MAX_LANGUAGE_RANGES)[:MAX_LANGUAGE_RANGES]
    for position, part in enumerate(parts):
        language_range, *parameters = (piece.strip() for piece in part.split(";"))
        if language_range == "*" or not _LANGUAGE_RANGE.fullmatch(language_range):
            continue
        weight = _parse_weight(parameters)
        if weight is None or weight == 0:
            continue
        primary_subtag = language_range.split("-", 1)[0].lower()
        # Negating the weight sorts the highest q first, and the position keeps
        # ranges of equal weight in header order.
        weighted.append((-weight, position, primary_subtag))

    weighted.sort()
    for _, _, primary_subtag in weighted:
        yield primary_subtag


def _parse_weight(parameters: list[str]) -> float | None:
    """Return the q-value of one language range, 1.0 without one, or None if invalid.

    RFC 9110 defines no other parameter for Accept-Language, so any other
    parameter, a repeated q or a value outside 0..1 makes the range invalid.
    """
    if not parameters:
        return 1.0
    if len(parameters) > 1:
        return None
    name, separator, value = parameters[0].partition("=")
    if not separator or name.strip().lower() != "q":
        return None
    value = value.strip()
    if not _QVALUE.fullmatch(value):
        return None
    return float(value)
