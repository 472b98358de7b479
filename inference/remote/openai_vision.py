"""The vision describer over an OpenAI-compatible chat endpoint (LLaVA on vLLM or KServe, any server
of the OpenAI HTTP API), with frames batched and an invalid answer retried once.

One ``POST chat/completions`` per batch of up to ``max_images_per_request`` frames (option, default
1; vLLM serves LLaVA-1.5 with one image a prompt, newer models take several). The request:

* a system message: describe only what is visible, indicators for review, never verdicts;
* a user message: the instruction (the input's ``prompt`` or `VISION_FRAMES_PROMPT`), the case's
  context prompt when there is one (as background, "not a fact"), then each frame as an
  ``image_url`` part with a base64 ``data:`` URL, introduced by its number ("Image 1", ...);
* ``response_format`` ``json_schema`` with ``strict: true`` and the schema of `VisionFrames`: one
  entry per image, numbered as sent, each a `SceneDescription` whose restraint indicators and
  distress cues name that number.

The answer is validated with pydantic. An answer that does not validate (or numbers the images
wrongly, or was cut off, or refused) is asked **once more** in the same conversation: the
model's answer as the assistant message, then a user message with the validation error. A second
invalid answer fails every frame of that request with the reason; nothing is filled in. A frame
that is not an image or too large fails alone, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, ValidationError

from inference.errors import InvalidModelOutput
from inference.remote.openai import (
    OpenAIVisionDescriber,
    _first,
)
from inference.tasks.common import IO
from inference.tasks.vision import Described, SceneDescription, VisionInput

SCHEMA_NAME = "vision_frames"
VISION_SYSTEM = (
    "You describe images for human reviewers of a case. Describe only what is visible; do not guess "
    "identities, ages or intentions and do not judge. Everything you report is an indicator for "
    "review, never a verdict. Leave a list empty when you see nothing of its kind. Answer with JSON "
    "matching the schema."
)
VISION_FRAMES_PROMPT = (
    "For each image give: a few plain sentences describing it (text); labels for visible objects, "
    "places and activities with a confidence between 0 and 1; the scene; the number of people "
    "visible; for each person their clothing and posture; the visible objects; restraint indicators "
    "(type: handcuffs, cable_ties, rope, tape, gag or other; the body position of the restrained "
    "person; a confidence between 0 and 1; the image number); and visible distress cues (what is "
    "visible, a confidence, the image number). Number the entries as the images are numbered."
)
RETRY_PROMPT = (
    "That answer is not valid: {error}. Answer again for the same images with JSON that matches the "
    "schema exactly. Report only what is visible."
)


class FrameDescription(SceneDescription):
    """One image's entry in a `VisionFrames` answer."""

    frame: int = Field(ge=1, description="the number of the image (1 = the first image sent)")


class VisionFrames(IO):
    """The answer for one request: one entry per image sent, in order."""

    frames: list[FrameDescription]


class OpenAIFramesDescriber(OpenAIVisionDescriber):
    """`VisionDescriber` over chat completions: frames batched, an invalid answer retried once."""

    backend: ClassVar[str] = "openai"

    def _predict(self, inputs: VisionInput) -> SceneDescription:
        [found] = self._describe_batch([inputs])
        if isinstance(found, InvalidModelOutput):
            raise found
        return found

    def _describe_batch(self, frames: Sequence[VisionInput]) -> list[Described]:
        outcomes: list[Described | None] = [None] * len(frames)
        sendable: list[tuple[int, str]] = []
        for index, frame in enumerate(frames):
            try:
                sendable.append((index, self.image_data_url(frame.path)))
            except InvalidModelOutput as exc:
                outcomes[index] = exc
        if sendable:
            first = frames[sendable[0][0]]
            try:
                described = self._ask(first, [url for _, url in sendable])
            except InvalidModelOutput as exc:
                described = [exc] * len(sendable)
            for (index, _), item in zip(sendable, described, strict=True):
                outcomes[index] = item
        return [item for item in outcomes if item is not None]

    # --- the conversation ---------------------------------------------------------------------

    def _ask(self, frame: VisionInput, urls: list[str]) -> list[Described]:
        """The descriptions of ``urls`` (one request, asked again once if the answer is invalid)."""
        parts: list[dict[str, Any]] = [{"type": "text", "text": frame.prompt or VISION_FRAMES_PROMPT}]
        if frame.context:
            parts.append(
                {
                    "type": "text",
                    "text": "Context of the case from the analyst (background for what to look at, "
                    f"not a fact about these images):\n{frame.context}",
                }
            )
        for number, url in enumerate(urls, start=1):
            parts.append({"type": "text", "text": f"Image {number}:"})
            parts.append({"type": "image_url", "image_url": {"url": url}})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": VISION_SYSTEM},
            {"role": "user", "content": parts},
        ]
        described, content, error = self._answer(messages, len(urls))
        if described is not None:
            return list(described)
        # once more, with the validation error in the follow-up message
        if content:
            messages.append({"role": "assistant", "content": content})
        messages.append({"role": "user", "content": RETRY_PROMPT.format(error=error)})
        described, _, second = self._answer(messages, len(urls))
        if described is not None:
            return list(described)
        reason = f"invalid answer, also when asked again with the error: {second}"
        return [InvalidModelOutput(reason) for _ in urls]

    def _answer(
        self, messages: list[dict[str, Any]], count: int
    ) -> tuple[list[SceneDescription] | None, str | None, str | None]:
        """(descriptions, content, None) for a valid answer; (None, the raw content, the error)
        otherwise."""
        content, problem = self.chat(messages, VisionFrames, SCHEMA_NAME)
        if problem is not None or content is None:
            return None, content, problem or "the answer has no content"
        try:
            frames = VisionFrames.model_validate_json(content).frames
        except ValidationError as exc:
            return None, content, f"it does not match the {SCHEMA_NAME} schema: {_first(exc)}"
        numbers = [entry.frame for entry in frames]
        if numbers != list(range(1, count + 1)):
            return None, content, f"it numbers the images {numbers}, but {count} were sent (1 to {count})"
        for entry in frames:
            marks = [item.frame for item in entry.restraint_indicators]
            marks += [item.frame for item in entry.distress_cues]
            if any(mark != entry.frame for mark in marks):
                return None, content, f"the entry of image {entry.frame} has indicators of image(s) {marks}"
        described = [SceneDescription.model_validate(entry.model_dump(exclude={"frame"})) for entry in frames]
        return described, content, None
